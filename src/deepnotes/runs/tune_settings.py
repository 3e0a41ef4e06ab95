"""A tune folder's settings (tune.json): the options that define one search, their defaults and
checks, and the folder they live in. Apart from :mod:`deepnotes.runs.tune` so that the options
are checked, and a running tune found, without importing Optuna."""

from __future__ import annotations

import json
from pathlib import Path

from deepnotes.data import NAMED
from deepnotes.errors import DeepnotesError, check_range, unknown_name
from deepnotes.optim import BETA_NAMES, list_optimizers
from deepnotes.runs.config import DEFAULTS, write_json
from deepnotes.runs.folder import check_name, new_container

# the settings of tune.json, each an option of `deepnotes tune` of the same name (RunConfig fields,
# then the search's)
SETTINGS = ["model", "data", "data_dir", "optimizer", "epochs", "batch_size", "schedule", "seed",
            "lr_range", "beta_range", "coarse_share"]
TUNE_DEFAULTS = {"lr_range": [1e-5, 1.0], "beta_range": [0.9, 0.999], "coarse_share": 0.5}

def beta_name(optimizer: str) -> str | None:
    """The optimiser's keyword for beta (Adam's beta1), or None for plain gradient descent."""
    return BETA_NAMES.get(optimizer)


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
    check_range("--trials", trials, 1, integer=True)
    if explicit.get("coarse_share") is not None:
        check_range("--coarse-share", explicit["coarse_share"], 0, 1, low_open=True)
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
        missing = [k for k in SETTINGS if k not in settings] if isinstance(settings, dict) \
            else list(SETTINGS)
        if missing:
            raise DeepnotesError(f"{settings_file}: incomplete, missing {', '.join(missing)}")
        return settings
    # hidden entries aside: another worker's tune.json may be a temporary file, not yet renamed
    if path.exists() and (not path.is_dir()
                          or any(not p.name.startswith(".") for p in path.iterdir())):
        raise DeepnotesError(f"--name {name}: {path} exists and is not a tune folder "
                             "(no tune.json); pick another --name")
    return None


def resolve_settings(explicit: dict, stored: dict | None, where: Path) -> dict:
    """A new tune: the defaults with the explicit options. An existing one: its own settings;
    an explicit option that differs from them is refused (a tune is one search)."""
    if stored is not None:
        changed = {k: v for k, v in explicit.items() if stored.get(k) != v}
        if changed:
            listed = ", ".join(f"--{k.replace('_', '-')} {_show(stored.get(k))} (not {_show(v)})"
                               for k, v in changed.items())
            raise DeepnotesError(f"{where} was tuned with {listed}; drop the options to continue "
                                 "it, or pick another --name")
        return dict(stored)
    settings = {k: DEFAULTS[k] for k in SETTINGS if k in DEFAULTS}
    settings.update(TUNE_DEFAULTS)
    settings.update(explicit)
    if beta_name(settings["optimizer"]) is None:
        settings["beta_range"] = None
    return settings


def _show(value) -> str:
    if isinstance(value, list):
        return ",".join(f"{v:g}" for v in value)
    return str(value)


def claim_tune_dir(out: str, name: str | None, settings: dict, created: bool) -> Path:
    """The tune folder, made and given its tune.json if new (another process may just have)."""
    if name:  # several workers share one tune folder: it may exist
        tune_dir = Path(out) / check_name(name)
        tune_dir.mkdir(parents=True, exist_ok=True)
    else:
        data = settings["data"] if settings["data"] in NAMED else Path(settings["data"]).stem
        tune_dir = new_container(out, None, f"tune-{settings['model']}-{data}")
    if created:
        stored = existing_tune(out, tune_dir.name) if name else None
        if stored is not None:
            resolve_settings(settings, stored, tune_dir)  # started meanwhile: the same tune?
        else:
            write_json(tune_dir / "tune.json", settings)
    elif not (tune_dir / "study.db").exists() and (tune_dir / "trials").exists():
        raise DeepnotesError(f"{tune_dir}: has trials/ but no study.db; cannot continue it")
    return tune_dir
