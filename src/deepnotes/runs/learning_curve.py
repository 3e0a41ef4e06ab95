"""A learning curve: train and dev error against the number of training examples m.

The notes name end-to-end deep learning: one network learning x -> y directly, in place of a
pipeline of hand-made stages. The course adds that it needs a lot of data to do so, and reads
bias and variance from the errors (1 - accuracy): with human-level error as a proxy for Bayes
error, avoidable bias = train error - human error and variance = dev error - train error. A
learning curve shows how both move as m grows. Train error rises towards the curve's floor as
fitting m examples gets harder; dev error falls; a gap that is still closing at the largest m
says that more data would help, a high train error that it would not (:mod:`deepnotes.strategy`).

:func:`run_learning_curve` trains the same initial weights (one seed) at each size m on the
first m examples of one seeded permutation of the training pool, so a smaller set is a subset of
every larger one, and evaluates every size on the same dev set. The inputs are normalised with
the pool's per-channel mean and std (no labels), so the sizes differ only in labelled examples.
Each size keeps its best epoch by the dev loss, as ``deepnotes train`` does, and its errors are
that epoch's.
Each size gets a complete run folder, ``RUN/m-<m>/``, whose config.json keeps m
(``train_examples``), so ``deepnotes evaluate RUN/m-144 --split train`` rebuilds its subset;
``RUN`` gets ``learning_curve.csv``, ``learning_curve.json`` and ``learning_curve.png``.

``budget``: ``"updates"`` (the default) gives every size as many mini-batch updates as --epochs
passes over the largest size take (a smaller m trains more epochs), so a small m's error is not
high merely because it was trained for fewer steps; ``"epochs"`` gives every size --epochs
passes. ``baseline="logistic"``: scikit-learn's logistic regression on the same normalised
pixels or features, flattened, at the same sizes, on the same dev set.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from deepnotes import atomic
from deepnotes.data import Dataset, Normalizer, Splits
from deepnotes.data.splits import shuffled_prefix
from deepnotes.errors import DeepnotesError, LossDiverged
from deepnotes.metrics import accuracy
from deepnotes.models.weights import fingerprint
from deepnotes.optim import create_optimizer
from deepnotes.runs.build import build_model
from deepnotes.runs.config import RunConfig, write_json
from deepnotes.runs.folder import group_folder, is_group
from deepnotes.runs.session import Session, fit, prepare
from deepnotes.strategy import check_human_error
from deepnotes.train import plots

log = logging.getLogger("deepnotes.learning_curve")

DEFAULT_SIZES = "0.1,0.3,1.0"
BUDGETS = ("updates", "epochs")
BASELINES = ("logistic",)
COLUMNS = ["m", "train_error", "dev_error"]
BASELINE_COLUMNS = ["baseline_train_error", "baseline_dev_error"]
SHARED_KEYS = ["model", "data", "epochs", "batch_size", "optimizer", "lr", "schedule", "seed",
               "fractions", "augment"]
FILES = ["learning_curve.csv", "learning_curve.json", "learning_curve.png"]
LOGISTIC = {"max_iter": 1000}  # scikit-learn's defaults otherwise: L2 penalty, C = 1, lbfgs


@dataclass(frozen=True)
class Point:
    """One size m: the network's errors (1 - accuracy) on its m examples and on the dev set."""

    m: int
    train_error: float
    dev_error: float
    dev_examples: int
    epochs: int
    run: str  # the size's run folder, relative to the curve's
    baseline_train_error: float | None = None
    baseline_dev_error: float | None = None


@dataclass
class LearningCurve:
    """The points in increasing m, and what they were measured against."""

    points: list[Point]
    pool: int  # examples in the training split, the largest m possible
    budget: str
    initial_weights_sha256: str
    human_error: float | None = None
    baseline: str | None = None

    def gaps(self) -> dict[str, float]:
        """At the largest m: variance = dev - train, and avoidable bias = train - human when the
        human error is known."""
        last = self.points[-1]
        out = {"variance": last.dev_error - last.train_error}
        if self.human_error is not None:
            out = {"avoidable_bias": last.train_error - self.human_error, **out}
        return out

    def to_dict(self) -> dict:
        return {"pool": self.pool, "budget": self.budget, "human_error": self.human_error,
                "baseline": self.baseline, "initial_weights_sha256": self.initial_weights_sha256,
                "gaps_at_largest_m": self.gaps(),
                "points": [dataclasses.asdict(p) for p in self.points]}


# ---------------------------------------------------------------- sizes


def parse_sizes(text: str) -> list[int | float]:
    """``"0.1,0.3,1.0"`` -> [0.1, 0.3, 1.0]; ``"100,500"`` -> [100, 500]. A number with a point or
    an exponent is a fraction of the training pool in (0, 1]; a whole number is a count >= 1."""
    parts = [part.strip() for part in text.split(",")]
    if not text.strip() or not all(parts):
        raise DeepnotesError(f"--sizes {text}: expected fractions of the training pool in "
                             "(0, 1] or counts of examples, separated by commas, e.g. 0.1,0.3,1.0")
    sizes: list[int | float] = []
    for part in parts:
        try:
            sizes.append(int(part) if part.lstrip("+-").isdigit() else float(part))
        except ValueError:
            raise DeepnotesError(f"--sizes {text}: {part!r} is not a number; expected fractions "
                                 "in (0, 1] or counts of examples, e.g. 0.1,0.3,1.0") from None
    _check_values(sizes, text)
    return sizes


def _check_values(sizes, text: str) -> None:
    for v in sizes:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise DeepnotesError(f"--sizes {text}: {v!r} is not a number")
        if isinstance(v, int) and v < 1:
            raise DeepnotesError(f"--sizes {text}: {v} examples; a count must be at least 1")
        if isinstance(v, float) and not (math.isfinite(v) and 0 < v <= 1):
            raise DeepnotesError(f"--sizes {text}: {v:g} is not a fraction in (0, 1] of the "
                                 "training pool (a count of examples is a whole number)")
    seen = {(type(v), v) for v in sizes}  # 1 (one example) is not 1.0 (the whole pool)
    if len(seen) < len(sizes):
        raise DeepnotesError(f"--sizes {text}: a size is given twice")


def resolve_sizes(sizes, pool: int) -> list[int]:
    """The counts m of ``sizes`` (fractions of ``pool`` rounded, counts as they are) in
    increasing order; none may be 0, exceed the pool, or equal another."""
    text = ",".join(_show(v) for v in sizes)
    if not sizes:
        raise DeepnotesError("--sizes: no size given; e.g. 0.1,0.3,1.0")
    _check_values(sizes, text)
    counts: dict[int, int | float] = {}
    for v in sizes:
        m = round(v * pool) if isinstance(v, float) else v
        if m < 1:
            raise DeepnotesError(f"--sizes {text}: {_show(v)} of the {pool} training examples "
                                 "is no example; use a larger fraction")
        if m > pool:
            raise DeepnotesError(f"--sizes {text}: {m} examples, but the training pool holds "
                                 f"{pool}; the largest size is 1.0 or {pool}")
        if m in counts:
            raise DeepnotesError(f"--sizes {text}: {_show(counts[m])} and {_show(v)} are both "
                                 f"{m} examples")
        counts[m] = v
    return sorted(counts)


def _show(size) -> str:
    return f"{size:g}" if isinstance(size, float) else str(size)


def subsets(train: torch.Tensor, counts: list[int], seed: int) -> list[torch.Tensor]:
    """The first m of one seeded permutation of the ``train`` indices, for each m (sorted, as a
    split is; as :meth:`deepnotes.data.Splits.with_train` rebuilds them): each lies inside
    every larger one."""
    return [shuffled_prefix(train, m, seed) for m in counts]


def epochs_for(m: int, largest: int, epochs: int, batch_size: int, budget: str) -> int:
    """Passes over m examples: ``epochs``, or (budget ``updates``) enough for the updates that
    ``epochs`` passes over ``largest`` take; a set of B or fewer is one batch an epoch."""
    if budget not in BUDGETS:
        raise DeepnotesError(f"--budget {budget}: expected one of {', '.join(BUDGETS)}")
    if budget == "epochs":
        return epochs
    updates = epochs * max(1, largest // batch_size)  # Batches drops a short last batch
    return math.ceil(updates / max(1, m // batch_size))


# ---------------------------------------------------------------- training


def learning_curve(config: RunConfig, sizes, run_dir: str | Path, *,
                   human_error: float | None = None, baseline: str | None = None,
                   budget: str = "updates", progress: bool = True) -> LearningCurve:
    """Prepare ``config`` (completed in place, as ``deepnotes train`` does) and run
    :func:`run_learning_curve` into ``run_dir``."""
    session = prepare(config, progress=progress, fresh=True)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_learning_curve(session, sizes, run_dir, human_error=human_error,
                              baseline=baseline, budget=budget, progress=progress)


def run_learning_curve(session: Session, sizes, run_dir: Path, *,
                       human_error: float | None = None, baseline: str | None = None,
                       budget: str = "updates", progress: bool = True) -> LearningCurve:
    """Train ``session``'s initial weights on each size into ``run_dir/m-<m>/`` and write the
    curve's files; ``sizes`` are fractions of the training pool (floats) or counts (ints)."""
    config, splits, y = session.config, session.splits, session.dataset.y
    counts = resolve_sizes(sizes, len(splits.train))
    check_baseline(baseline, session.dataset, config.data)
    if human_error is not None:
        check_human_error(human_error)
    if budget not in BUDGETS:
        raise DeepnotesError(f"--budget {budget}: expected one of {', '.join(BUDGETS)}")
    initial = {k: v.detach().to("cpu", copy=True) for k, v in session.model.state_dict().items()}
    points = []
    for i, (m, train) in enumerate(zip(counts, subsets(splits.train, counts, config.seed)), 1):
        epochs = epochs_for(m, counts[-1], config.epochs, config.mini_batch, budget)
        log.info("size %d/%d: m = %d of %d training examples, %d epochs", i, len(counts), m,
                 len(splits.train), epochs)
        seen = len(torch.unique(y[train.to(y.device)])) if y.dim() == 1 else len(config.classes)
        if seen < len(config.classes):
            log.warning("m = %d: %d of the %d classes have no training example", m,
                        len(config.classes) - seen, len(config.classes))
        point = train_size(session, Splits(train, splits.dev, splits.test, splits.train_dev),
                           epochs, initial, run_dir / f"m-{m}", progress)
        if baseline is not None:
            b_train, b_dev = logistic_errors(session.dataset, config.normalize, train, splits.dev)
            log.info("m = %d: logistic regression train error %.4f, dev error %.4f", m, b_train,
                     b_dev)
            point = dataclasses.replace(point, baseline_train_error=b_train,
                                        baseline_dev_error=b_dev)
        points.append(point)
    curve = LearningCurve(points, len(splits.train), budget, fingerprint(initial), human_error,
                          baseline)
    write_curve(run_dir, config, curve)
    return curve


def train_size(session: Session, splits: Splits, epochs: int, initial: dict, run_dir: Path,
               progress: bool = True) -> Point:
    """The ``initial`` weights trained on ``splits.train`` into a full run folder."""
    m = len(splits.train)
    config = session.config.updated(epochs=epochs, splits=splits.sizes(), provenance=None,
                                    train_examples=m)  # evaluate and resume rebuild the subset
    torch.manual_seed(config.seed)  # the RNG state `deepnotes train` has after prepare
    model = build_model(config)
    model.load_state_dict(initial)
    optimizer = create_optimizer(config.optimizer, model.parameters(), config.lr,
                                 beta=config.beta, weight_decay=config.weight_decay,
                                 **config.optimizer_variants())
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        _, metrics = fit(session.replace(config=config, splits=splits, model=model,
                                         optimizer=optimizer), run_dir, progress=progress)
    except LossDiverged as exc:
        raise DeepnotesError(f"m = {m}: {exc}; try a lower --lr") from None
    assert metrics is not None  # one process: it evaluates
    return Point(m, 1 - metrics["train"]["accuracy"], 1 - metrics["dev"]["accuracy"],
                 len(splits.dev), epochs, run_dir.name)


# ---------------------------------------------------------------- the baseline


def check_baseline(baseline: str | None, dataset: Dataset, data: str) -> None:
    """A known baseline, on data it can read: images or a table."""
    if baseline is None:
        return
    if baseline not in BASELINES:
        raise DeepnotesError(f"--baseline {baseline}: expected one of {', '.join(BASELINES)}")
    if dataset.kind not in ("image", "table") or dataset.y.dim() > 1:
        raise DeepnotesError(f"--baseline {baseline}: a logistic regression reads the pixels or "
                             f"features of image or table data, and --data {data} holds "
                             f"{dataset.kind} data")


def features(dataset: Dataset, normalize: dict, idx: torch.Tensor) -> np.ndarray:
    """The normalised examples ``idx`` flattened, one row each: (m, n_C n_H n_W) or (m, n_x)."""
    x = dataset.x[idx.to(dataset.x.device)].cpu()
    return Normalizer.from_dict(normalize)(x).reshape(len(idx), -1).numpy()


def logistic_errors(dataset: Dataset, normalize: dict, train: torch.Tensor,
                    dev: torch.Tensor) -> tuple[float, float]:
    """(train error, dev error) of scikit-learn's LogisticRegression (softmax over the classes)
    fit on the rows ``train``; a subset with one class predicts that class."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    x_train, x_dev = features(dataset, normalize, train), features(dataset, normalize, dev)
    y_train, y_dev = (dataset.y[i.to(dataset.y.device)].cpu().numpy() for i in (train, dev))
    if len(np.unique(y_train)) < 2:
        log.warning("m = %d: every example is of one class; the baseline predicts it", len(train))
        return 0.0, 1 - float(np.mean(y_dev == y_train[0]))
    # one BLAS thread: beside torch's idle OpenMP threads, more make lbfgs many times slower
    with threadpool_limits(1, user_api="blas"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model = LogisticRegression(**LOGISTIC).fit(x_train, y_train)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        log.warning("m = %d: the logistic regression did not converge in %d iterations",
                    len(train), LOGISTIC["max_iter"])
    return (1 - accuracy(y_train, model.predict(x_train)),
            1 - accuracy(y_dev, model.predict(x_dev)))


# ---------------------------------------------------------------- files


def write_curve(run_dir: Path, config: RunConfig, curve: LearningCurve) -> None:
    """learning_curve.json, learning_curve.csv and learning_curve.png."""
    write_json(run_dir / "learning_curve.json",
               {"config": {k: getattr(config, k) for k in SHARED_KEYS},
                "subset": "the first m of a seeded permutation of the training split",
                **curve.to_dict()})
    columns = COLUMNS + (BASELINE_COLUMNS if curve.baseline else [])
    atomic.write_csv(run_dir / "learning_curve.csv", columns,
                     [dataclasses.asdict(p) for p in curve.points])
    plot_curve(curve, run_dir / "learning_curve.png",
               f"{config.model} on {config.data}: the same initial weights, nested subsets")


def plot_curve(curve: LearningCurve, path: Path, title: str | None = None) -> None:
    """Train and dev error against m (log-x when the sizes span more than 10x), the baseline's
    dashed, human-level error as a horizontal line."""
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    m = [p.m for p in curve.points]
    ax.plot(m, [p.train_error for p in curve.points], "-o", color="C0", label="train error")
    ax.plot(m, [p.dev_error for p in curve.points], "-s", color="C1", label="dev error")
    if curve.baseline:
        ax.plot(m, [p.baseline_train_error for p in curve.points], "--o", color="C0", alpha=0.6,
                markersize=4, label=f"{curve.baseline} regression: train")
        ax.plot(m, [p.baseline_dev_error for p in curve.points], "--s", color="C1", alpha=0.6,
                markersize=4, label=f"{curve.baseline} regression: dev")
    if curve.human_error is not None:
        ax.axhline(curve.human_error, color="k", linestyle=":", linewidth=1.2,
                   label=f"human error {curve.human_error:g}")
    if max(m) > 10 * min(m):
        ax.set_xscale("log")
    ax.set_xticks(m, [str(v) for v in m])  # the sizes themselves, not powers of ten
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set(xlabel="training examples m", ylabel="error (1 - accuracy)")
    ax.set_ylim(bottom=0)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    plots.save(fig, path)


def is_learning_curve(path: Path) -> bool:
    """A folder this module wrote: learning_curve.json, or only run folders named m-<count>."""
    return is_group(path, "learning_curve.json",
                    lambda name: name.startswith("m-") and name[2:].isdigit())


def curve_folder(out: str | Path, name: str | None, overwrite: bool, config: RunConfig) -> Path:
    """``out/name``, or ``curve-MODEL-DATA`` numbered if taken; ``overwrite`` replaces an
    earlier learning curve (and nothing else)."""
    return group_folder(out, name, overwrite, f"curve-{config.model}-{config.data_name}",
                        is_learning_curve, "learning-curve")
