"""Hyperparameter search on Optuna: random search for alpha and beta, coarse to fine.

The course: alpha is the hyperparameter that most needs tuning. Try random values, not a grid (a
grid spends most trials on values of the unimportant hyperparameter); sample alpha on a log scale
(r uniform in [log10 a, log10 b], alpha = 10^r), and beta through 1 - beta on a log scale
(r uniform, beta = 1 - 10^r), because beta near 1 is where small changes matter. Then zoom in:
a coarse pass over the whole range, a fine pass around the best point found.

A tune folder holds ``study.db`` (Optuna's SQLite storage, so a tune can be resumed and shared by
several processes), ``tune.json`` (its settings), ``trials/NNNN/`` (one run folder per trial),
``trials.csv``, ``tune.png`` and ``best.json`` (:func:`write_reports`); its settings are
:mod:`deepnotes.runs.tune_settings`.
"""

from __future__ import annotations

import logging
import math
import random
import shutil
import time
import zlib
from pathlib import Path

import numpy as np
import optuna
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from sqlalchemy.exc import SQLAlchemyError
from tqdm.auto import tqdm

from deepnotes import atomic
from deepnotes.errors import DeepnotesError, LossDiverged
from deepnotes.optim import create_optimizer
from deepnotes.runs.build import build_model
from deepnotes.runs.config import write_json
from deepnotes.runs.session import Session, fit, mark_stopped
from deepnotes.runs.tune_settings import beta_name
from deepnotes.train import plots

log = logging.getLogger(__name__)

STUDY = "deepnotes-tune"
FINE_FACTOR = 10 ** 0.5  # the fine range: half a decade either side of the best alpha, 1 - beta
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
CSV_FIELDS = ["number", "state", "phase", "lr", "beta", "dev_accuracy", "seconds", "note"]


class TrialRandomSampler(optuna.samplers.BaseSampler):
    """Random search whose draws depend only on (seed, trial number, parameter name).

    So a trial samples the same values whichever process runs it and however often the tune is
    resumed. A log distribution is sampled on a log scale: r uniform, value = 10^r.
    """

    def __init__(self, seed: int = 0):
        self.seed = seed % 2**64

    def infer_relative_search_space(self, study, trial) -> dict:
        return {}

    def sample_relative(self, study, trial, search_space) -> dict:
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        rng = np.random.default_rng([self.seed, trial.number, zlib.crc32(param_name.encode())])
        return draw(rng, param_distribution)


def draw(rng: np.random.Generator, dist):
    """One value of ``dist``: uniform, or uniform in log10 for a log distribution."""
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[int(rng.integers(len(dist.choices)))]
    if not isinstance(dist, (FloatDistribution, IntDistribution)):
        raise TypeError(f"TrialRandomSampler cannot sample {type(dist).__name__}")
    if dist.log:
        value = 10 ** rng.uniform(math.log10(dist.low), math.log10(dist.high))
    else:
        value = rng.uniform(dist.low, dist.high)
    if isinstance(dist, IntDistribution):
        return int(min(max(round(value), dist.low), dist.high))
    if dist.step is not None:
        value = dist.low + round((value - dist.low) / dist.step) * dist.step
    return float(min(max(value, dist.low), dist.high))


def open_study(tune_dir: Path, seed: int, attempts: int = 20) -> optuna.Study:
    """The tune's study in ``tune_dir/study.db``, created or loaded; several processes may share
    it (SQLite waits up to a minute for a lock). Processes that start together race to create the
    tables; the loser retries and loads what the winner made."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{Path(tune_dir).resolve() / 'study.db'}"
    failure = ""
    for attempt in range(attempts):
        try:
            storage = optuna.storages.RDBStorage(
                url, engine_kwargs={"connect_args": {"timeout": 60}})
            pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
            return optuna.create_study(storage=storage, sampler=TrialRandomSampler(seed),
                                       pruner=pruner, study_name=STUDY, direction="maximize",
                                       load_if_exists=True)
        except (SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
            failure = str(exc).splitlines()[0]
            if attempt < attempts - 1:
                time.sleep(0.1 + 0.2 * random.random())
    raise DeepnotesError(f"{url[len('sqlite:///'):]}: cannot open the study ({failure})")


def finished(study: optuna.Study) -> list:
    """Trials that count toward --trials: completed or pruned (not failed or interrupted)."""
    return study.get_trials(deepcopy=False, states=FINISHED)


def best_trial(study: optuna.Study, before: int | None = None):
    """The completed, non-diverged trial with the highest dev accuracy (the earliest on a tie),
    among trials numbered below ``before``; None if there is none."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if "diverged" not in t.user_attrs and (before is None or t.number < before)]
    return max(done, key=lambda t: (t.value, -t.number), default=None)


def full_ranges(settings: dict) -> dict:
    """The coarse search space: alpha in --lr-range, 1 - beta in [1 - beta_max, 1 - beta_min]."""
    ranges = {"lr": tuple(settings["lr_range"])}
    if settings.get("beta_range"):
        low, high = settings["beta_range"]
        ranges["one_minus_beta"] = (1 - high, 1 - low)
    return ranges


def narrow(center: float, low: float, high: float, factor: float = FINE_FACTOR) -> tuple:
    """[center / factor, center * factor] (a window on the log scale), clipped to [low, high]."""
    return max(low, center / factor), min(high, center * factor)


def coarse_trials(n_trials: int, coarse_share: float) -> int:
    """How many trials (the first, by number) sample the whole range."""
    return math.ceil(coarse_share * n_trials)


def search_ranges(study: optuna.Study, number: int, settings: dict, n_trials: int):
    """(phase, ranges, center trial) for trial ``number``. Coarse: the whole range, for the first
    ceil(coarse_share * n_trials) trials (failed, i.e. interrupted, ones not counted). Fine: a
    window of half a decade either side of the best trial so far, on the log scale (the whole
    range while there is none)."""
    full = full_ranges(settings)
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    earlier = number - sum(t.number < number for t in failed)  # an interrupted trial is redone
    if earlier < coarse_trials(n_trials, settings["coarse_share"]):
        return "coarse", full, None
    best = best_trial(study, before=number)
    if best is None:
        return "coarse", full, None
    return "fine", {k: narrow(best.params[k], *full[k]) for k in full}, best.number


def objective(trial: optuna.Trial, session: Session, tune_dir: Path, settings: dict,
              n_trials: int) -> float:
    """Train one trial into ``trials/NNNN``; its best dev accuracy over the epochs.

    A trial whose loss became NaN or infinite is a result (that alpha is too large), not a fault:
    it scores 0 and the tune goes on.
    """
    phase, ranges, center = search_ranges(trial.study, trial.number, settings, n_trials)
    trial.set_user_attr("phase", phase)
    if center is not None:
        trial.set_user_attr("center", center)
    lr = trial.suggest_float("lr", *ranges["lr"], log=True)
    beta = None
    if "one_minus_beta" in ranges:
        beta = 1 - trial.suggest_float("one_minus_beta", *ranges["one_minus_beta"], log=True)
        trial.set_user_attr("beta", beta)
    run_dir = trial_dir(tune_dir, trial.number)
    trial.set_user_attr("run_dir", run_dir.relative_to(tune_dir).as_posix())
    trial_session = trial_run(session, lr, beta, {"tune": str(tune_dir), "number": trial.number,
                                                   "phase": phase})
    run_dir.mkdir(parents=True, exist_ok=False)
    best = {"dev_accuracy": 0.0}
    try:
        fit(trial_session, run_dir, progress=False,
            on_epoch=pruning_hook(trial, best, session.config.epochs))
    except LossDiverged as exc:
        trial.set_user_attr("diverged", str(exc))
        return 0.0
    except optuna.TrialPruned as exc:
        mark_stopped(run_dir, "pruned", str(exc))
        raise
    return best["dev_accuracy"]


def trial_dir(tune_dir: Path, number: int) -> Path:
    return Path(tune_dir) / "trials" / f"{number:04d}"


def trial_run(session: Session, lr: float, beta: float | None, origin: dict) -> Session:
    """A session for one trial: the shared data, a fresh model seeded as ``prepare`` seeds it,
    and an optimiser with this trial's alpha and beta (both recorded in the trial's config)."""
    config = session.config.updated(lr=lr, beta=beta, trial=origin)
    torch.manual_seed(config.seed)
    model = build_model(config)
    optimizer = create_optimizer(config.optimizer, model.parameters(), lr, beta=beta,
                                 weight_decay=config.weight_decay)
    return session.replace(config=config, model=model, optimizer=optimizer)


def pruning_hook(trial: optuna.Trial, best: dict, epochs: int):
    """``on_epoch``: report dev accuracy to Optuna, keep the best, stop a trial that trails the
    median of earlier trials at the same epoch (never at the last epoch: it is done anyway)."""

    def on_epoch(row: dict) -> None:
        accuracy = row.get("dev_accuracy")
        if accuracy is None:
            return
        best["dev_accuracy"] = max(best["dev_accuracy"], accuracy)
        trial.report(accuracy, row["epoch"])
        if row["epoch"] < epochs and trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {row['epoch']}")

    return on_epoch


def run_trial(study: optuna.Study, session: Session, tune_dir: Path, settings: dict,
              n_trials: int):
    """Ask for a trial, train it, tell the study how it went; an interrupted or failed trial is
    marked FAIL (it does not count) and its unfinished folder removed."""
    trial = study.ask()
    try:
        value = objective(trial, session, tune_dir, settings, n_trials)
    except optuna.TrialPruned:
        return study.tell(trial, state=TrialState.PRUNED)
    except BaseException:
        study.tell(trial, state=TrialState.FAIL)
        shutil.rmtree(trial_dir(tune_dir, trial.number), ignore_errors=True)
        raise
    return study.tell(trial, value)


def tune(study: optuna.Study, session: Session, tune_dir: Path, settings: dict, n_trials: int,
         progress: bool = True) -> None:
    """Run trials until the study has ``n_trials`` finished ones (counting those of earlier runs
    and of other processes); trials.csv is rewritten after each."""
    done = len(finished(study))
    with tqdm(total=n_trials, initial=min(done, n_trials), disable=not progress, unit="trial",
              desc="tune", dynamic_ncols=True) as bar:
        while done < n_trials:
            run_trial(study, session, tune_dir, settings, n_trials)
            write_trials_csv(study, Path(tune_dir) / "trials.csv")
            now = len(finished(study))
            bar.update(min(now, n_trials) - bar.n)
            best = best_trial(study)
            if best is not None:
                bar.set_postfix(best=f"{best.value:.4f}", trial=best.number)
            log.info("trial %d/%d done; best dev accuracy %s", min(now, n_trials), n_trials,
                     "none yet" if best is None else f"{best.value:.4f} (trial {best.number})")
            done = now


def trial_row(t) -> dict:
    """One trial as a row of trials.csv."""
    seconds = (t.datetime_complete - t.datetime_start).total_seconds() \
        if t.datetime_complete and t.datetime_start else None
    return {"number": t.number, "state": t.state.name, "phase": t.user_attrs.get("phase", ""),
            "lr": t.params.get("lr"), "beta": t.user_attrs.get("beta"),
            "dev_accuracy": t.value, "seconds": None if seconds is None else round(seconds, 2),
            "note": t.user_attrs.get("diverged", "")}


def write_trials_csv(study: optuna.Study, path: Path) -> None:
    """Every trial of the study, one row each, in trial order."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    atomic.write_csv(path, CSV_FIELDS, [trial_row(t) for t in trials])


def top_trials(study: optuna.Study, k: int = 5) -> list[dict]:
    """The ``k`` finished trials with the highest dev accuracy, as trials.csv rows."""
    rows = [trial_row(t) for t in finished(study) if t.value is not None]
    return sorted(rows, key=lambda r: (-r["dev_accuracy"], r["number"]))[:k]


def best_summary(study: optuna.Study, settings: dict) -> dict | None:
    """best.json: the best trial's number, alpha, beta, dev accuracy and run folder (relative to
    the tune folder)."""
    best = best_trial(study)
    if best is None:
        return None
    name = beta_name(settings["optimizer"]) if settings.get("beta_range") else None
    return {"trial": best.number, "lr": best.params["lr"], "beta_name": name,
            "beta": best.user_attrs.get("beta"), "dev_accuracy": best.value,
            "phase": best.user_attrs.get("phase"), "run_dir": best.user_attrs["run_dir"],
            "trials_finished": len(finished(study)), "optimizer": settings["optimizer"]}


def plot_tune(study: optuna.Study, path: Path, settings: dict) -> None:
    """Dev accuracy against alpha on a log axis spanning --lr-range, coarse and fine trials in two
    colours; a second panel against 1 - beta (log axis) when beta is tuned. The best is ringed."""
    from matplotlib.ticker import NullFormatter

    trials = [t for t in finished(study) if t.value is not None]
    full = full_ranges(settings)
    panels = [("lr", "alpha (learning rate), log scale")]
    if "one_minus_beta" in full:
        panels.append(("one_minus_beta", "1 - beta, log scale (beta = 1 - 10^r)"))
    plt = plots.pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    best = best_trial(study)
    for ax, (param, label) in zip(axes[0], panels):
        for phase, colour in (("coarse", "tab:blue"), ("fine", "tab:orange")):
            points = [(t.params[param], t.value) for t in trials
                      if t.user_attrs.get("phase") == phase and param in t.params]
            if points:
                ax.scatter(*zip(*points), color=colour, label=f"{phase} ({len(points)})",
                           alpha=0.8)
        if best is not None and param in best.params:
            ax.scatter([best.params[param]], [best.value], s=160, facecolors="none",
                       edgecolors="red", label=f"best (trial {best.number})")
        low, high = full[param]
        ax.set_xscale("log")
        ax.set_xlim(low / 10 ** 0.1, high * 10 ** 0.1)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set(xlabel=label, ylabel="best dev accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"random search, coarse to fine: {len(trials)} trials")
    plots.save(fig, path)


def write_reports(study, settings: dict, tune_dir: Path) -> None:
    """trials.csv, tune.png and best.json from the study as it stands."""
    if not study.get_trials(deepcopy=False):
        return
    write_trials_csv(study, tune_dir / "trials.csv")
    if finished(study):
        plot_tune(study, tune_dir / "tune.png", settings)
    best = best_summary(study, settings)
    if best is not None:
        write_json(tune_dir / "best.json", {**best, "run_dir": str(tune_dir / best["run_dir"])})
