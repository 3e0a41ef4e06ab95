"""``deepnotes tune``: random search for alpha (and beta), coarse to fine, on Optuna.

The notes: alpha must be tuned. The course: sample it on a log scale, and beta through 1 - beta
on a log scale (beta = 1 - 10^r); random values, not a grid; coarse to fine. The tune folder
``runs/NAME/`` keeps the study in SQLite, so rerunning the command continues it and several
processes started on one folder share the trials.
"""

from __future__ import annotations

import logging
from pathlib import Path

from deepnotes.errors import DeepnotesError

log = logging.getLogger("deepnotes.cli")

DEFAULT_TRIALS = 20
NEEDS_OPTUNA = "deepnotes tune needs Optuna: pip install 'deepnotes[tune]'"


def add_parser(sub) -> None:
    from deepnotes.cli.train import BATCH_HELP, add_model_and_data_options
    from deepnotes.optim import SCHEDULES, list_optimizers
    from deepnotes.runs.config import DEFAULTS as D

    p = sub.add_parser(
        "tune", help="tune alpha (and beta) by random search, coarse to fine",
        description="Random search for the learning rate alpha (log scale) and beta (1 - beta on "
        "a log scale), coarse to fine, on Optuna. Each trial is a full run folder under "
        "OUT/NAME/trials/; rerun the command with the same --name to continue a tune, or start "
        "it in several processes to share the trials.", argument_default=None)
    add_model_and_data_options(p, label_column=False)
    p.add_argument("--optimizer", help=f"{', '.join(list_optimizers())} ({D['optimizer']})")
    p.add_argument("--epochs", type=int, help=f"epochs per trial ({D['epochs']})")
    p.add_argument("--batch-size", type=int, help=BATCH_HELP)
    p.add_argument("--schedule", help=f"learning-rate schedule: {', '.join(SCHEDULES)} "
                   f"({D['schedule']})")
    p.add_argument("--seed", type=int, help=f"seed of splits, weights and the search ({D['seed']})")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (auto; may differ between "
                   "processes sharing a tune)")
    p.add_argument("--trials", type=int, default=DEFAULT_TRIALS,
                   help=f"finished trials the tune should have in total ({DEFAULT_TRIALS})")
    p.add_argument("--coarse-share", type=float, help="share of the trials that sample the whole "
                   "range before the fine search around the best (0.5)")
    p.add_argument("--lr-range", metavar="LOW,HIGH", help="alpha's range, sampled on a log scale "
                   "(1e-5,1)")
    p.add_argument("--beta-range", metavar="LOW,HIGH", help="beta's range (Adam's beta1), sampled "
                   "as 1 - beta on a log scale (0.9,0.999); not for sgd")
    p.add_argument("--out", default="runs", help="folder for tune folders (runs)")
    p.add_argument("--name", help="tune folder name; an existing tune is continued "
                   "(default: tune-MODEL-DATA, numbered if taken)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def run(args) -> int:
    from deepnotes.runs import tune_settings
    from deepnotes.runs.folder import check_name

    try:
        import optuna  # noqa: F401
    except ImportError:
        raise DeepnotesError(NEEDS_OPTUNA) from None
    explicit = parse_options(args)
    tune_settings.check_options(explicit, args.trials)
    if args.name is not None:
        check_name(args.name)
    stored = tune_settings.existing_tune(args.out, args.name)
    settings = tune_settings.resolve_settings(explicit, stored, Path(args.out) / str(args.name))
    return start(args, settings, created=stored is None)


def parse_options(args) -> dict:
    """The options given on the command line, as tune.json settings (ranges as [low, high]);
    impossible numbers refused."""
    from deepnotes.cli.train import explicit_options
    from deepnotes.runs.tune_settings import SETTINGS, parse_range

    explicit = explicit_options(args, SETTINGS)
    for key in ("lr_range", "beta_range"):
        if key in explicit:
            explicit[key] = parse_range(explicit[key], "--" + key.replace("_", "-"))
    return explicit


def start(args, settings: dict, created: bool) -> int:
    from deepnotes.runs.config import DEFAULTS, RunConfig
    from deepnotes.runs.session import prepare
    from deepnotes.runs.tune_settings import SETTINGS, claim_tune_dir

    config = RunConfig(**{k: settings[k] for k in SETTINGS if k in DEFAULTS},
                       device=args.device or RunConfig.device)
    session = prepare(config, progress=args.progress, fresh=True)
    settings["model"] = config.model
    tune_dir = claim_tune_dir(args.out, args.name, settings, created)
    return tune(args, session, settings, tune_dir)


def tune(args, session, settings: dict, tune_dir: Path) -> int:
    from deepnotes.runs import tune as search
    from deepnotes.train import TrainingInterrupted

    study = search.open_study(tune_dir, settings["seed"])
    quiet_training = logging.getLogger("deepnotes.train")
    level = quiet_training.level
    quiet_training.setLevel(logging.WARNING)  # a progress bar over trials, not epoch lines
    try:
        search.tune(study, session, tune_dir, settings, args.trials, progress=args.progress)
    except (TrainingInterrupted, KeyboardInterrupt):
        again = f" --name {tune_dir.name}" if not args.name else ""
        raise TrainingInterrupted(f"interrupted; the unfinished trial is discarded; run the same "
                                  f"command{again} to continue {tune_dir}") from None
    finally:
        quiet_training.setLevel(level)
        search.write_reports(study, settings, tune_dir)
    report(study, settings, tune_dir)
    return 0


def report(study, settings: dict, tune_dir: Path) -> None:
    """The top five trials, then the best one and its run folder."""
    from deepnotes.runs import tune as search

    rows = search.top_trials(study, 5)
    with_beta = settings.get("beta_range") is not None
    name = search.beta_name(settings["optimizer"]) if with_beta else None
    header = f"{'trial':>6} {'phase':<7} {'alpha':>10} " + (f"{name:>9} " if with_beta else "") \
        + f"{'dev acc':>8} {'state':<9} {'seconds':>8}"
    print(header)
    for r in rows:
        beta = f"{r['beta']:>9.5g} " if with_beta else ""
        state = "diverged" if r["note"] else r["state"].lower()
        print(f"{r['number']:>6} {r['phase']:<7} {r['lr']:>10.4g} {beta}{r['dev_accuracy']:>8.4f} "
              f"{state:<9} {r['seconds'] if r['seconds'] is not None else '':>8}")
    best = search.best_summary(study, settings)
    if best is None:
        log.warning("no trial trained to the end without its loss diverging; try a lower "
                    "--lr-range (with another --name)")
        return
    beta = f", {name} {best['beta']:.5g}" if with_beta else ""
    print(f"best: trial {best['trial']}, alpha {best['lr']:.4g}{beta}, dev accuracy "
          f"{best['dev_accuracy']:.4f}; run folder {tune_dir / best['run_dir']}")
