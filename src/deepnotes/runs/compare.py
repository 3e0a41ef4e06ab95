"""The course's update rules side by side: one model, one data set, the same initial weights.

With dW the gradient of the cost and alpha the learning rate (t counts the updates):

``sgd``       gradient descent:  W := W - alpha dW
``momentum``  v := beta v + (1 - beta) dW;  W := W - alpha v          (beta = 0.9)
``rmsprop``   s := beta s + (1 - beta) dW^2;  W := W - alpha dW / (sqrt(s) + eps)
``adam``      momentum + RMSprop with bias correction: v / (1 - beta1^t), s / (1 - beta2^t);
              W := W - alpha v_hat / (sqrt(s_hat) + eps)                (0.9, 0.999, 1e-8)

Variants are rows of their own (:mod:`deepnotes.runs.rules`): ``rmsprop+eps=0``
(the notes' dW / sqrt(s)), ``adam+eps-inside-sqrt`` (sqrt(s_hat + eps)),
``adam+no-bias-correction``.

:func:`compare_optimizers` loads the data once and builds the model once, then trains a copy of
those initial weights with each rule. Every rule sees the same mini-batches in the same order
(the order depends on the seed alone), so the curves differ only by the update rule and its
alpha. Each rule gets a complete run folder, ``RUN/<label>/`` (``deepnotes evaluate RUN/adam``
works, and ``RUN/adam+eps-inside-sqrt`` keeps its variant in config.json), and ``RUN`` gets
``comparison.json``, ``comparison.csv``, ``step_losses.csv`` and ``loss_curves.png``.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch

from deepnotes import atomic
from deepnotes.errors import DeepnotesError, LossDiverged
from deepnotes.models.weights import fingerprint
from deepnotes.optim import (
    create_optimizer,
)
from deepnotes.runs.build import batches, build_model
from deepnotes.runs.config import RunConfig, write_json
from deepnotes.runs.folder import group_folder, is_group
from deepnotes.runs.rules import ORDER, Rule, check_rules, is_label, learning_rates
from deepnotes.runs.session import Session, fit, prepare
from deepnotes.train import plots
from deepnotes.train.precision import autocast_dtype

log = logging.getLogger("deepnotes.compare")

COLUMNS = ["optimizer", "lr", "train_loss", "dev_loss", "dev_accuracy", "best_dev_accuracy",
           "dev_f1", "seconds"]
SHARED_KEYS = ["model", "data", "epochs", "batch_size", "schedule", "seed", "fractions", "augment"]
FILES = ["comparison.json", "comparison.csv", "step_losses.csv", "loss_curves.png"]


# ---------------------------------------------------------------- training


def compare_optimizers(config: RunConfig, rules, run_dir: str | Path,
                       lrs: float | dict | None = None, progress: bool = True) -> list[dict]:
    """Prepare ``config`` (data, model) once, train it with each rule; see :func:`run_comparison`.

    ``config`` is completed in place like ``deepnotes train``'s.
    """
    rules = check_rules(ORDER if rules is None else rules)
    rates = learning_rates(rules, lrs)
    session = prepare(config, progress=progress, fresh=True)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_comparison(session, rules, run_dir, rates, progress=progress)


def run_comparison(session: Session, rules, run_dir: Path, lrs: float | dict | None = None,
                   progress: bool = True) -> list[dict]:
    """Train ``session``'s initial weights with each rule (None: the four plain ones; names,
    entries like ``"rmsprop+eps=0"`` or :class:`Rule`) into ``run_dir/<label>/``.

    Returns one row per rule (the columns of :data:`COLUMNS`, ``optimizer`` being the label, plus
    ``run`` and ``initial_weights_sha256``, the fingerprint of the weights it started from: the
    same for all). Writes comparison.json / .csv, step_losses.csv and loss_curves.png.
    """
    rules = check_rules(ORDER if rules is None else rules)
    rates = learning_rates(rules, lrs)
    run_dir = Path(run_dir)
    initial = {k: v.detach().to("cpu", copy=True) for k, v in session.model.state_dict().items()}
    warm_up(session)
    curves = {}
    for i, rule in enumerate(rules, 1):
        label = rule.label
        log.info("optimizer %d/%d: %s (alpha %g): %s", i, len(rules), label, rates[label],
                 rule.text)
        curves[label] = train_one(session, rule, rates[label], initial, run_dir / label, progress)
    rows = [curve["row"] for curve in curves.values()]
    write_comparison(run_dir, session.config, rows, curves,
                     {rule.label: rule.text for rule in rules})
    return rows


def warm_up(session: Session) -> None:
    """A forward and backward pass of a throwaway copy of the model on one mini-batch, so that
    one-off start-up costs (kernel choice, memory pools) do not count in the first rule's time."""
    config, dataset, device, task = session.config, session.dataset, session.device, \
        session.config.task
    dataset.to(device)  # as fit does, once
    model = copy.deepcopy(session.model).to(device).train()
    amp = autocast_dtype(config.amp_precision, torch.device(device))  # as the trainer casts
    for x, y in batches(config, dataset, session.splits.train, device, train=True).epoch(0):
        with torch.autocast(torch.device(device).type, amp or torch.float32,
                            enabled=amp is not None):
            z, y = task.forward(model, x, y)
            loss = task.loss(z, y)
        loss.backward()
        break


def train_one(session: Session, rule: Rule, lr: float, initial: dict, run_dir: Path,
              progress: bool = True) -> dict:
    """One rule from the ``initial`` weights into a full run folder; returns its curves and row.
    Its config.json keeps the variant, so evaluate and --resume rebuild the same optimiser."""
    name = rule.label
    config = session.config.updated(optimizer=rule.name, lr=lr, provenance=None,
                                    **rule.config_fields())
    torch.manual_seed(config.seed)  # the RNG state `deepnotes train` has after prepare
    model = build_model(config)
    model.load_state_dict(initial)
    weights = fingerprint(model.state_dict())
    optimizer = create_optimizer(rule.name, model.parameters(), lr, **config.optimizer_variants())
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        trainer, metrics = fit(session.replace(config=config, model=model, optimizer=optimizer),
                               run_dir, progress=progress)
    except DeepnotesError as exc:
        if not isinstance(exc, LossDiverged):
            raise
        log.warning("optimizer %s (alpha %g): %s", name, lr, exc)
        return diverged(name, lr, str(exc), weights)
    assert metrics is not None  # one process: it evaluates
    history = trainer.history
    final = metrics["dev"]["accuracy"]  # the last epoch's, in full precision
    dev_accuracy = [r["dev_accuracy"] for r in history[:-1]] + [final]
    row = {"optimizer": name, "lr": lr,
           "train_loss": metrics["train"]["loss"], "dev_loss": metrics["dev"]["loss"],
           "dev_accuracy": final, "best_dev_accuracy": max(dev_accuracy),
           "dev_f1": metrics["dev"]["f1"], "seconds": sum(r["seconds"] for r in history),
           "run": name, "initial_weights_sha256": weights}
    return {"row": row, "step_losses": list(trainer.step_losses),
            "epochs": [r["epoch"] for r in history], "dev_accuracy": dev_accuracy,
            "steps_per_epoch": len(trainer.step_losses) // max(1, len(history))}


def diverged(name: str, lr: float, why: str, weights: str) -> dict:
    """The row and (empty) curves of a rule whose loss became NaN or infinite: a result too."""
    row = {"optimizer": name, "lr": lr, **{k: None for k in COLUMNS[2:]}, "run": name,
           "diverged": why, "initial_weights_sha256": weights}
    return {"row": row, "step_losses": [], "epochs": [], "dev_accuracy": [], "steps_per_epoch": 1}


def best(rows: list[dict], key: str = "dev_accuracy") -> list[str]:
    """The rule(s) with the highest ``key`` (ties all named; none if every rule diverged)."""
    finished = [row for row in rows if row[key] is not None]
    top = max((row[key] for row in finished), default=None)
    return [row["optimizer"] for row in finished if row[key] == top]


# ---------------------------------------------------------------- files


def write_comparison(run_dir: Path, config: RunConfig, rows: list[dict], curves: dict,
                     texts: dict) -> None:
    """comparison.json (``texts``: each label's update rule), comparison.csv, step_losses.csv
    and loss_curves.png."""
    write_json(run_dir / "comparison.json",
               {"config": {k: getattr(config, k) for k in SHARED_KEYS}, "best": best(rows),
                "rules": texts, "rows": rows})
    atomic.write_csv(run_dir / "comparison.csv", COLUMNS, rows)
    names = list(curves)
    steps = max(len(c["step_losses"]) for c in curves.values())
    atomic.write_csv(run_dir / "step_losses.csv", ["step", *names],
              [{"step": t + 1, **{n: _at(curves[n]["step_losses"], t) for n in names}}
               for t in range(steps)])
    title = (f"{config.model} on {config.data}: the same initial weights and "
             f"mini-batches; schedule {config.schedule}")
    plot_curves(curves, run_dir / "loss_curves.png", title)


def _at(values: list, i: int):
    return values[i] if i < len(values) else None


def moving_average(values: list[float], window: int) -> list[float]:
    """Mean of the last ``window`` values at each step (fewer at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_curves(curves: dict, path: Path, title: str | None = None) -> None:
    """Left: training loss per step (log scale; raw, light, and a moving average). Right: dev
    accuracy per epoch."""
    plt = plots.pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, (name, curve) in enumerate(curves.items()):
        color = f"C{i}"
        losses = curve["step_losses"]
        steps = range(1, len(losses) + 1)
        window = max(1, min(50, curve["steps_per_epoch"] // 2, len(losses) // 10))
        ax_loss.plot(steps, losses, color=color, alpha=0.25, linewidth=0.8)
        alpha = curve["row"]["lr"]
        ax_loss.plot(steps, moving_average(losses, window), color=color, linewidth=1.6,
                     label=f"{name} (alpha {alpha:g})" + (", diverged" if not losses else ""))
        ax_acc.plot(curve["epochs"], curve["dev_accuracy"], "-o", color=color, markersize=4,
                    label=name)
    ax_loss.set_yscale("log")
    ax_loss.set(title="training loss per mini-batch (line: moving average)", xlabel="step",
                ylabel="cross-entropy")
    ax_acc.set(title="dev accuracy", xlabel="epoch")
    ax_acc.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    plots.save(fig, path)


def is_comparison(path: Path) -> bool:
    """A folder this module wrote: comparison.json, or only run folders named after rules
    (``adam``, ``rmsprop+eps=0``: canonical labels)."""
    return is_group(path, "comparison.json", is_label)


def comparison_folder(out: str | Path, name: str | None, overwrite: bool,
                      config: RunConfig) -> Path:
    """``out/name``, or ``compare-MODEL-DATA`` numbered if taken; ``overwrite`` replaces an
    earlier comparison (and nothing else)."""
    return group_folder(out, name, overwrite, f"compare-{config.model}-{config.data_name}",
                        is_comparison, "comparison")
