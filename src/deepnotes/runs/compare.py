"""The notes' update rules side by side: one model, one data set, the same initial weights.

With dW the gradient of the cost and alpha the learning rate (t counts the updates):

``sgd``       gradient descent:  W := W - alpha dW
``momentum``  v := beta v + (1 - beta) dW;  W := W - alpha v          (beta = 0.9)
``rmsprop``   s := beta s + (1 - beta) dW^2;  W := W - alpha dW / (sqrt(s) + eps)
``adam``      momentum + RMSprop with bias correction: v / (1 - beta1^t), s / (1 - beta2^t);
              W := W - alpha v_hat / (sqrt(s_hat) + eps)                (0.9, 0.999, 1e-8)

:func:`compare_optimizers` loads the data once and builds the model once, then trains a copy of
those initial weights with each rule. Every rule sees the same mini-batches in the same order
(the order depends on the seed alone), so the curves differ only by the update rule and its
alpha. Each rule gets a complete run folder, ``RUN/<rule>/`` (``deepnotes evaluate RUN/adam``
works), and ``RUN`` gets ``comparison.json``, ``comparison.csv``, ``step_losses.csv`` and
``loss_curves.png``.
"""

from __future__ import annotations

import copy
import logging
import shutil
from pathlib import Path

import torch

from deepnotes import atomic
from deepnotes.data import NAMED
from deepnotes.errors import DeepnotesError, LossDiverged, unknown_name
from deepnotes.models.weights import fingerprint
from deepnotes.optim import DEFAULT_LRS, check_lr, create_optimizer, list_optimizers
from deepnotes.runs.build import batches, build_model
from deepnotes.runs.config import RunConfig, write_json
from deepnotes.runs.folder import check_name, new_container
from deepnotes.runs.session import Session, fit, prepare
from deepnotes.train import plots
from deepnotes.train.trainer import autocast_dtype

log = logging.getLogger("deepnotes.compare")

RULES = {
    "sgd": "W := W - alpha dW",
    "momentum": "v := beta v + (1-beta) dW; W := W - alpha v",
    "rmsprop": "s := beta s + (1-beta) dW^2; W := W - alpha dW / (sqrt(s) + eps)",
    "adam": "momentum + RMSprop, bias-corrected",
}
ORDER = ["sgd", "momentum", "rmsprop", "adam"]  # the notes' order: each builds on the one before
COLUMNS = ["optimizer", "lr", "train_loss", "dev_loss", "dev_accuracy", "best_dev_accuracy",
           "dev_f1", "seconds"]
SHARED_KEYS = ["model", "data", "epochs", "batch_size", "schedule", "seed", "fractions", "augment"]
FILES = ["comparison.json", "comparison.csv", "step_losses.csv", "loss_curves.png"]


# ---------------------------------------------------------------- names and learning rates


def check_names(names) -> list[str]:
    """The rules to compare, in the given order; unknown, repeated or no names are refused."""
    names, valid = list(names), list_optimizers()
    if not names:
        raise DeepnotesError(f"--optimizers: no optimizer given; valid: {', '.join(valid)}")
    seen = set()
    for name in names:
        if name not in valid:
            raise DeepnotesError(f"--optimizers: {unknown_name('optimizer', name, valid)}")
        if name in seen:
            raise DeepnotesError(f"--optimizers: {name} is listed twice")
        seen.add(name)
    return names


def parse_names(text: str) -> list[str]:
    """``"sgd,adam"`` -> ["sgd", "adam"] (checked by :func:`check_names`)."""
    return check_names([part.strip() for part in text.split(",") if part.strip()])


def parse_lrs(text: str) -> float | dict:
    """``--lr`` text: ``0.01`` (alpha for every rule) or ``sgd=0.05,adam=1e-3`` (per rule).

    A bare number may be mixed with pairs (``0.01,adam=1e-3``): it applies to the rules not named.
    Returns a float or a dict of name -> alpha, with the bare number under the key ``None``.
    """
    out: dict = {}
    for part in (p.strip() for p in text.split(",")):
        before, sep, value = part.rpartition("=")
        name = before.strip() if sep else None
        if sep and not name:
            raise DeepnotesError(f"--lr {text}: {part!r} has no optimizer name before '='")
        try:
            alpha = float(value)
        except ValueError:
            raise DeepnotesError(f"--lr {text}: expected ALPHA or NAME=ALPHA[,NAME=ALPHA...], "
                                 f"got {part!r}") from None
        if name in out:
            raise DeepnotesError(f"--lr {text}: {'a bare alpha' if name is None else name} "
                                 "is given twice")
        out[name] = alpha
    return out[None] if list(out) == [None] else out


def learning_rates(names: list[str], lrs: float | dict | None = None) -> dict[str, float]:
    """alpha for each rule: ``lrs`` (one float, or per name with ``None`` for the rest), else
    :data:`deepnotes.optim.DEFAULT_LRS`. Every alpha must be > 0; every name must be compared."""
    if lrs is None:
        lrs = {}
    elif not isinstance(lrs, dict):
        lrs = {None: lrs}
    for name in lrs:
        if name is not None and name not in list_optimizers():
            raise DeepnotesError(f"--lr: {unknown_name('optimizer', name, list_optimizers())}")
        if name is not None and name not in names:
            raise DeepnotesError(f"--lr {name}={lrs[name]:g}: {name} is not among the compared "
                                 f"optimizers ({', '.join(names)})")
    out = {name: float(lrs.get(name, lrs.get(None, DEFAULT_LRS[name]))) for name in names}
    for name, alpha in out.items():
        try:
            check_lr(alpha)
        except DeepnotesError:
            raise DeepnotesError(f"--lr {name}={alpha:g}: the learning rate must be > 0 "
                                 "and finite") from None
    return out


# ---------------------------------------------------------------- training


def compare_optimizers(config: RunConfig, names, run_dir: str | Path,
                       lrs: float | dict | None = None, progress: bool = True) -> list[dict]:
    """Prepare ``config`` (data, model) once, train it with each rule; see :func:`run_comparison`.

    ``config`` is completed in place like ``deepnotes train``'s.
    """
    names = check_names(ORDER if names is None else names)
    rates = learning_rates(names, lrs)
    session = prepare(config, progress=progress, fresh=True)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_comparison(session, names, run_dir, rates, progress=progress)


def run_comparison(session: Session, names, run_dir: Path, lrs: float | dict | None = None,
                   progress: bool = True) -> list[dict]:
    """Train ``session``'s initial weights with each rule (None: all four) into ``run_dir/<rule>/``.

    Returns one row per rule (the columns of :data:`COLUMNS`, plus ``run`` and
    ``initial_weights_sha256``, the fingerprint of the weights it started from: the same for all).
    Writes comparison.json / .csv, step_losses.csv and loss_curves.png into ``run_dir``.
    """
    names = check_names(ORDER if names is None else names)
    rates = learning_rates(names, lrs)
    run_dir = Path(run_dir)
    initial = {k: v.detach().to("cpu", copy=True) for k, v in session.model.state_dict().items()}
    warm_up(session)
    curves = {}
    for i, name in enumerate(names, 1):
        log.info("optimizer %d/%d: %s (alpha %g): %s", i, len(names), name, rates[name],
                 RULES.get(name, ""))
        curves[name] = train_one(session, name, rates[name], initial, run_dir / name, progress)
    rows = [curve["row"] for curve in curves.values()]
    write_comparison(run_dir, session.config, rows, curves)
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


def train_one(session: Session, name: str, lr: float, initial: dict, run_dir: Path,
              progress: bool = True) -> dict:
    """One rule from the ``initial`` weights into a full run folder; returns its curves and row."""
    config = session.config.updated(optimizer=name, lr=lr, provenance=None)
    torch.manual_seed(config.seed)  # the RNG state `deepnotes train` has after prepare
    model = build_model(config)
    model.load_state_dict(initial)
    weights = fingerprint(model.state_dict())
    optimizer = create_optimizer(name, model.parameters(), lr)
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


def write_comparison(run_dir: Path, config: RunConfig, rows: list[dict], curves: dict) -> None:
    """comparison.json, comparison.csv, step_losses.csv and loss_curves.png."""
    write_json(run_dir / "comparison.json",
               {"config": {k: getattr(config, k) for k in SHARED_KEYS}, "best": best(rows),
                "rules": {row["optimizer"]: RULES.get(row["optimizer"]) for row in rows},
                "rows": rows})
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
    """A folder this module wrote: comparison.json, or only run folders named after rules."""
    path = Path(path)
    if (path / "comparison.json").is_file():
        return True
    entries = [p for p in path.iterdir() if not p.name.startswith(".")] if path.is_dir() else []
    return bool(entries) and all(p.is_dir() and p.name in list_optimizers()
                                 and (p / "config.json").is_file() for p in entries)


def comparison_folder(out: str | Path, name: str | None, overwrite: bool,
                      config: RunConfig) -> Path:
    """``out/name``, or ``compare-MODEL-DATA`` numbered if taken; ``overwrite`` replaces an
    earlier comparison (and nothing else)."""
    if name:
        existing = Path(out) / check_name(name)
        if existing.exists() and not overwrite:
            raise DeepnotesError(f"--name {name}: {existing} exists; use --overwrite to "
                                 "replace it")
        if existing.exists():
            if not (existing.is_dir() and (is_comparison(existing)
                                           or not any(existing.iterdir()))):
                raise DeepnotesError(f"--overwrite: {existing} is not a comparison folder; "
                                     "not removing it")
            shutil.rmtree(existing)
    data_name = config.data if config.data in NAMED else Path(config.data).stem
    return new_container(out, name, f"compare-{config.model}-{data_name}")
