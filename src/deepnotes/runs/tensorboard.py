"""``--tensorboard``: a run's learning curves for TensorBoard, in ``RUN/tensorboard/``.

After each epoch, the scalars of its history row (train and dev loss and accuracy, dev macro
F1, the learning rate) and the training rate in the task's unit (``images_per_second``,
``rows_per_second``, ``sequences_per_second`` or ``tokens_per_second``: the number of the
epoch's log line), at step = the epoch; once, the run's options as hyperparameters with its kept
dev metric. Written with torch's ``SummaryWriter``, which needs the ``tensorboard`` package
(``pip install deepnotes[tensorboard]``); view with ``tensorboard --logdir runs``.
"""

from __future__ import annotations

import math
from pathlib import Path

from deepnotes.errors import DeepnotesError
from deepnotes.runs.config import RunConfig

FOLDER = "tensorboard"
SCALARS = {"train_loss": "loss/train", "dev_loss": "loss/dev", "train_accuracy": "accuracy/train",
           "dev_accuracy": "accuracy/dev", "dev_f1": "f1/dev", "lr": "learning_rate"}


def writer_class():
    """torch's SummaryWriter, or a one-line error naming the missing package."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise DeepnotesError("--tensorboard needs the tensorboard package: pip install "
                             "'deepnotes[tensorboard]' (or pip install tensorboard)") from None
    return SummaryWriter


class EpochLog:
    """``on_epoch(row)`` for the trainer: one point a scalar an epoch, into ``run_dir``'s
    tensorboard folder; ``close(best)`` adds the hyperparameters with the kept metric."""

    def __init__(self, run_dir: Path, config: RunConfig, train_examples: int):
        self.writer = writer_class()(log_dir=str(Path(run_dir) / FOLDER))
        self.config, self.train_examples = config, train_examples
        self.unit = config.task.unit  # images, rows, sequences or tokens

    def __call__(self, row: dict) -> None:
        step = int(row["epoch"])
        for key, tag in SCALARS.items():
            if row.get(key) is not None and math.isfinite(row[key]):
                self.writer.add_scalar(tag, row[key], step)
        rate = row.get("rate")  # the trainer's; else the examples over the epoch's seconds
        if rate is None and row.get("seconds") and self.unit != "tokens":
            rate = self.train_examples / row["seconds"]
        if rate is not None:
            self.writer.add_scalar(f"{self.unit}_per_second", rate, step)
        self.writer.flush()

    def close(self, best: dict | None) -> None:
        """The options once, as hyperparameters, with the kept epoch's monitored value."""
        options = {k: v if isinstance(v, (int, float, str, bool)) else str(v)
                   for k, v in self.config.to_dict().items() if k in RunConfig.options()
                   and v is not None}
        if best:
            self.writer.add_hparams(options, {f"hparam/{best['monitor']}": best["value"]},
                                    run_name=".")
        self.writer.close()
