"""``deepnotes tune``: random search for alpha (and beta), coarse to fine, on Optuna.

The notes: alpha must be tuned; sample it on a log scale, and beta through 1 - beta on a log
scale (beta = 1 - 10^r); random values, not a grid; coarse to fine. The tune folder
``runs/NAME/`` keeps the study in SQLite, so rerunning the command continues it and several
processes started on one folder share the trials.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from deepnotes.errors import DeepnotesError, unknown_name

log = logging.getLogger("deepnotes.cli")

# the settings of tune.json, each an option of the same name (RunConfig fields, then the search's);
# every option defaults to None so an explicit one is known
OPTIONS = ["model", "data", "data_dir", "optimizer", "epochs", "batch_size", "schedule", "seed",
           "lr_range", "beta_range", "coarse_share"]
TUNE_DEFAULTS = {"lr_range": [1e-5, 1.0], "beta_range": [0.9, 0.999], "coarse_share": 0.5}
DEFAULT_TRIALS = 20
NEEDS_OPTUNA = "deepnotes tune needs Optuna: pip install 'deepnotes[tune]'"


def add_parser(sub) -> None:
    from deepnotes.cli.train import DATA_HELP
    from deepnotes.models import list_models
    from deepnotes.optim import SCHEDULES, list_optimizers
    from deepnotes.runs.config import DEFAULTS as D

    p = sub.add_parser(
        "tune", help="tune alpha (and beta) by random search, coarse to fine",
        description="Random search for the learning rate alpha (log scale) and beta (1 - beta on "
        "a log scale), coarse to fine, on Optuna. Each trial is a full run folder under "
        "OUT/NAME/trials/; rerun the command with the same --name to continue a tune, or start "
        "it in several processes to share the trials.", argument_default=None)
    p.add_argument("--model", help=f"network: {', '.join(list_models())} "
                   "(default: lenet5 for images, mlp for tables)")
    p.add_argument("--data", help=f"{DATA_HELP} (default: {D['data']})")
    p.add_argument("--data-dir", help="folder holding the IDX files of fashion-mnist / mnist")
    p.add_argument("--optimizer", help=f"{', '.join(list_optimizers())} ({D['optimizer']})")
    p.add_argument("--epochs", type=int, help=f"epochs per trial ({D['epochs']})")
    p.add_argument("--batch-size", type=int, help=f"mini-batch size ({D['batch_size']})")
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
    from deepnotes.runs.folder import check_name

    try:
        import optuna  # noqa: F401
    except ImportError:
        raise DeepnotesError(NEEDS_OPTUNA) from None
    explicit = parse_options(args)
    check_options(explicit, args.trials)
    if args.name is not None:
        check_name(args.name)
    stored = existing_tune(args.out, args.name)
    settings = resolve_settings(explicit, stored, Path(args.out) / str(args.name))
    return start(args, settings, created=stored is None)


def parse_options(args) -> dict:
    """The options given on the command line, as tune.json settings (ranges as [low, high]);
    impossible numbers refused."""
    from deepnotes.cli.train import explicit_options

    explicit = explicit_options(args, OPTIONS)
    for key in ("lr_range", "beta_range"):
        if key in explicit:
            explicit[key] = parse_range(explicit[key], "--" + key.replace("_", "-"))
    return explicit


def parse_range(text: str, option: str) -> list[float]:
    """``LOW,HIGH`` as two floats."""
    parts = text.split(",")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise DeepnotesError(f"{option} {text}: expected two numbers LOW,HIGH, e.g. 1e-5,1") \
            from None
    return [low, high]


def check_options(explicit: dict, trials: int) -> None:
    """Refuse impossible settings before any work (and before any folder is made)."""
    from deepnotes.optim import list_optimizers
    from deepnotes.runs.tune import beta_name

    if trials < 1:
        raise DeepnotesError(f"--trials {trials}: expected at least 1")
    share = explicit.get("coarse_share")
    if share is not None and not 0 < share <= 1:
        raise DeepnotesError(f"--coarse-share {share}: expected a share in (0, 1]")
    if "lr_range" in explicit:
        low, high = explicit["lr_range"]
        if not 0 < low < high < float("inf"):
            raise DeepnotesError(f"--lr-range {low:g},{high:g}: expected 0 < LOW < HIGH "
                                 "(alpha is sampled on a log scale)")
    if "beta_range" in explicit:
        low, high = explicit["beta_range"]
        if not 0 < low < high < 1:
            raise DeepnotesError(f"--beta-range {low:g},{high:g}: expected 0 < LOW < HIGH < 1")
    name = explicit.get("optimizer")
    if name is not None and name not in list_optimizers():
        raise DeepnotesError(unknown_name("optimizer", name, list_optimizers()))
    if name is not None and "beta_range" in explicit and beta_name(name) is None:
        raise DeepnotesError(f"--beta-range: --optimizer {name} has no beta to tune")


def existing_tune(out: str, name: str | None) -> dict | None:
    """The settings of the tune in OUT/NAME (tune.json), or None when there is none yet."""
    if not name:
        return None
    path = Path(out) / name
    settings_file = path / "tune.json"
    if settings_file.is_file():
        try:
            settings = json.loads(settings_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DeepnotesError(f"{settings_file}: not valid JSON ({exc})") from None
        missing = [k for k in OPTIONS if k not in settings] if isinstance(settings, dict) \
            else list(OPTIONS)
        if missing:
            raise DeepnotesError(f"{settings_file}: incomplete, missing {', '.join(missing)}")
        return settings
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise DeepnotesError(f"--name {name}: {path} exists and is not a tune folder "
                             "(no tune.json); pick another --name")
    return None


def resolve_settings(explicit: dict, stored: dict | None, where: Path) -> dict:
    """A new tune: the defaults with the explicit options. An existing one: its own settings;
    an explicit option that differs from them is refused (a tune is one search)."""
    from deepnotes.runs.config import DEFAULTS
    from deepnotes.runs.tune import beta_name

    if stored is not None:
        changed = {k: v for k, v in explicit.items() if stored.get(k) != v}
        if changed:
            listed = ", ".join(f"--{k.replace('_', '-')} {_show(stored.get(k))} (not {_show(v)})"
                               for k, v in changed.items())
            raise DeepnotesError(f"{where} was tuned with {listed}; drop the options to continue "
                                 "it, or pick another --name")
        return dict(stored)
    settings = {k: DEFAULTS[k] for k in OPTIONS if k in DEFAULTS}
    settings.update(TUNE_DEFAULTS)
    settings.update(explicit)
    if beta_name(settings["optimizer"]) is None:
        settings["beta_range"] = None
    return settings


def _show(value) -> str:
    if isinstance(value, list):
        return ",".join(f"{v:g}" for v in value)
    return str(value)


def start(args, settings: dict, created: bool) -> int:
    from deepnotes.runs.config import DEFAULTS, RunConfig
    from deepnotes.runs.session import prepare

    config = RunConfig(**{k: settings[k] for k in OPTIONS if k in DEFAULTS},
                       device=args.device or RunConfig.device)
    session = prepare(config, progress=not args.quiet, fresh=True)
    settings["model"] = config.model
    tune_dir = claim_tune_dir(args, settings, created)
    return tune(args, session, settings, tune_dir)


def claim_tune_dir(args, settings: dict, created: bool) -> Path:
    """The tune folder, made and given its tune.json if new (another process may just have)."""
    from deepnotes.data import NAMED
    from deepnotes.runs.config import write_json
    from deepnotes.runs.folder import check_name, new_container

    if args.name:  # several workers share one tune folder: it may exist
        tune_dir = Path(args.out) / check_name(args.name)
        tune_dir.mkdir(parents=True, exist_ok=True)
    else:
        data = settings["data"] if settings["data"] in NAMED else Path(settings["data"]).stem
        tune_dir = new_container(args.out, None, f"tune-{settings['model']}-{data}")
    if created:
        stored = existing_tune(args.out, tune_dir.name) if args.name else None
        if stored is not None:
            resolve_settings(settings, stored, tune_dir)  # started meanwhile: the same tune?
        else:
            write_json(tune_dir / "tune.json", settings)
    elif not (tune_dir / "study.db").exists() and (tune_dir / "trials").exists():
        raise DeepnotesError(f"{tune_dir}: has trials/ but no study.db; cannot continue it")
    return tune_dir


def tune(args, session, settings: dict, tune_dir: Path) -> int:
    from deepnotes.runs import tune as search
    from deepnotes.train import TrainingInterrupted

    study = search.open_study(tune_dir, settings["seed"])
    quiet_training = logging.getLogger("deepnotes.train")
    level = quiet_training.level
    quiet_training.setLevel(logging.WARNING)  # a progress bar over trials, not epoch lines
    try:
        search.tune(study, session, tune_dir, settings, args.trials, progress=not args.quiet)
    except (TrainingInterrupted, KeyboardInterrupt):
        again = f" --name {tune_dir.name}" if not args.name else ""
        raise TrainingInterrupted(f"interrupted; the unfinished trial is discarded; run the same "
                                  f"command{again} to continue {tune_dir}") from None
    finally:
        quiet_training.setLevel(level)
        write_reports(study, settings, tune_dir)
    report(study, settings, tune_dir)
    return 0


def write_reports(study, settings: dict, tune_dir: Path) -> None:
    """trials.csv, tune.png and best.json from the study as it stands."""
    from deepnotes.runs import tune as search
    from deepnotes.runs.config import write_json

    if not study.get_trials(deepcopy=False):
        return
    search.write_trials_csv(study, tune_dir / "trials.csv")
    if search.finished(study):
        search.plot_tune(study, tune_dir / "tune.png", settings)
    best = search.best_summary(study, settings)
    if best is not None:
        write_json(tune_dir / "best.json", {**best, "run_dir": str(tune_dir / best["run_dir"])})


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
