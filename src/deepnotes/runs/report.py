"""What a run reports: metrics.json (every split's accuracy, loss, P/R/F1, confusion matrix and
its task's own measures), the learning curves and the confusion matrix."""

from __future__ import annotations

from pathlib import Path

from deepnotes.data import Dataset
from deepnotes.runs.build import batches
from deepnotes.runs.config import RunConfig, write_json
from deepnotes.train import evaluate, plots
from deepnotes.train.tasks import MultiTask


def split_metrics(model, config: RunConfig, dataset: Dataset, splits, device,
                  names=None) -> dict:
    """metrics.json: for each split (all that ``splits`` holds unless ``names`` are given:
    train, train_dev, dev, test), accuracy, loss, P/R/F1, the confusion matrix and what else
    judges the run's task (perplexity, exact match)."""
    task, out = config.task, {}
    for name in names or splits.names():
        idx = getattr(splits, name)
        result = evaluate(model, batches(config, dataset, idx, device), task,
                          precision=config.amp_precision)
        report = task.report(result["y_true"], result["y_pred"], config.classes)
        out[name] = {"accuracy": report.pop("accuracy"), "loss": result["loss"], **report}
        out[name].update(task.extra_metrics(model, dataset, idx, result["loss"]))
    return out


def write(run_dir: Path, result: dict, history: list[dict], config: RunConfig) -> None:
    """metrics.json, learning_curves.png and confusion_matrix.png (one matrix a task for
    several binary tasks)."""
    write_json(run_dir / "metrics.json", result)
    plots.learning_curves(history, run_dir / "learning_curves.png")
    draw = plots.task_matrices if isinstance(config.task, MultiTask) else plots.confusion_matrix
    draw(result["test"]["confusion_matrix"], config.classes, run_dir / "confusion_matrix.png")
