"""``deepnotes runs``: one row a run folder found directly under a folder, as a table or records.

A row says what was trained (model, data), how far (epochs run of those asked, the kept epoch),
how well (dev and test accuracy and macro F1 from metrics.json), how long (the ``seconds`` of
history.csv, summed) and how it ended::

    finished     metrics.json is there: the run ended and was evaluated
    diverged     stopped on a NaN or infinite loss (stopped.json says so; a finished run
                 trained on that diverged keeps its scores)
    interrupted  stopped by SIGTERM or Ctrl-C (stopped.json), or killed (no word at all)
    pruned       a tune trial stopped early, trailing the trials before it (stopped.json)
    damaged      config.json or metrics.json cannot be read (the warning says why)

Folders that deepnotes did not make (no config.json marked as a run) and hidden ones (such as
the ``.NAME.replaced`` of ``--overwrite``) are left out.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from deepnotes.errors import DeepnotesError, unknown_name
from deepnotes.runs.config import RunConfig, read_config
from deepnotes.runs.folder import is_ours
from deepnotes.runs.session import STOPPED
from deepnotes.train.history import read_history

log = logging.getLogger(__name__)


@dataclass
class RunRow:
    """One run folder; None where the run does not tell (shown as ``-``, null in JSON)."""

    name: str
    model: str | None = None
    data: str | None = None
    epochs: int | None = None  # epochs run (rows of history.csv)
    asked: int | None = None  # epochs asked for (config.json's epochs)
    best: int | None = None  # the kept epoch: metrics.json's best.epoch
    dev_acc: float | None = None
    dev_f1: float | None = None  # macro F1
    test_acc: float | None = None
    test_f1: float | None = None
    seconds: float | None = None  # wall time of the epochs run
    status: str = "interrupted"


COLUMNS = tuple(f.name for f in dataclasses.fields(RunRow))  # the keys of --sort and --json
DESCENDING = ("dev_acc", "dev_f1", "test_acc", "test_f1")  # the best first
TEXT = ("name", "model", "data", "status")  # left-aligned in the table; numbers right-aligned


def list_runs(folder: str | Path) -> list[RunRow]:
    """The rows of the runs directly under ``folder``, by name."""
    root = Path(folder)
    if not root.is_dir():
        what = "not a folder" if root.exists() else "no such folder"
        raise DeepnotesError(f"{folder}: {what}; expected the folder that holds run folders "
                             "(deepnotes train's --out, default runs)")
    paths = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [row for row in map(read_row, paths) if row is not None]


def read_row(path: Path) -> RunRow | None:
    """The row of the run in ``path``; None if deepnotes did not make ``path``."""
    if not (path / "config.json").is_file() or not _maybe_ours(path):
        return None
    row = RunRow(name=path.name)
    try:
        fill_config(row, read_config(path))
        fill_history(row, path)
        fill_results(row, path)
    except DeepnotesError as exc:
        log.warning("damaged run folder: %s", exc)
        row.status = "damaged"
    return row


def _maybe_ours(path: Path) -> bool:
    """config.json marked as deepnotes' (:func:`~deepnotes.runs.folder.is_ours`), or one that
    cannot be read at all: a damaged run rather than someone else's folder."""
    try:
        json.loads((path / "config.json").read_text())
    except (OSError, ValueError, RecursionError):
        return True
    return is_ours(path)


def fill_config(row: RunRow, config: RunConfig) -> None:
    row.model, row.data, row.asked = config.model, config.data, config.epochs


def fill_history(row: RunRow, path: Path) -> None:
    """Epochs run and their seconds, from history.csv (none before the first epoch ended)."""
    file = path / "history.csv"
    if not file.is_file():
        row.epochs = 0
        return
    try:
        history = read_history(file)
        row.epochs, row.seconds = len(history), sum(r["seconds"] or 0.0 for r in history)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("%s: unreadable, epochs and seconds not shown (%s)", file, exc)


def fill_results(row: RunRow, path: Path) -> None:
    """Scores, kept epoch and status: from metrics.json when the run finished, else the
    status that stopped.json records (interrupted without it). A finished run trained on
    (``--more-epochs``) that stopped before its next checkpoint keeps its scores, and shows
    how the extension stopped."""
    file = path / "metrics.json"
    metrics = read_json(file)
    if metrics is None:
        row.status = stopped_reason(path)
        return
    if not isinstance(metrics, dict):
        raise DeepnotesError(f"{file}: expected an object of splits")
    row.dev_acc, row.dev_f1 = (score(metrics, "dev", key, file) for key in ("accuracy", "f1"))
    row.test_acc, row.test_f1 = (score(metrics, "test", key, file) for key in ("accuracy", "f1"))
    best = metrics.get("best")
    epoch = best.get("epoch") if isinstance(best, dict) else None
    row.best = epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None
    row.status = stopped_reason(path) if (path / STOPPED).is_file() else "finished"


def score(metrics: dict, split: str, key: str, file: Path) -> float | None:
    """metrics.json's (``file``'s) ``split``'s ``key``; None if the run has no such split, or
    NaN there."""
    if split not in metrics:
        return None
    value = metrics[split].get(key) if isinstance(metrics[split], dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DeepnotesError(f"{file}: {split}.{key}: expected a number, found {value!r}")
    return float(value) if math.isfinite(value) else None


def stopped_reason(path: Path) -> str:
    """diverged, interrupted or pruned, as stopped.json says; interrupted when it says
    nothing."""
    try:
        stopped = read_json(path / STOPPED)
    except DeepnotesError as exc:
        log.warning("%s", exc)
        return "interrupted"
    reason = stopped.get("reason") if isinstance(stopped, dict) else None
    return reason if reason in ("diverged", "interrupted", "pruned") else "interrupted"


def read_json(path: Path):
    """The JSON in ``path``; None if there is no such file."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as exc:
        raise DeepnotesError(f"{path}: unreadable ({str(exc).splitlines()[0]})") from None


def sort_rows(rows: list[RunRow], key: str = "name") -> list[RunRow]:
    """``rows`` by column ``key``: accuracy and F1 highest first, the others from the lowest;
    rows missing the value last; ties by name."""
    check_key(key)
    by_name = sorted(rows, key=lambda r: r.name)
    present = [r for r in by_name if getattr(r, key) is not None]
    missing = [r for r in by_name if getattr(r, key) is None]
    present.sort(key=lambda r: getattr(r, key), reverse=key in DESCENDING)
    return present + missing


def check_key(key: str) -> str:
    """``key`` if it is a column (a key of --sort); else a one-line error listing them."""
    if key not in COLUMNS:
        raise DeepnotesError(f"--sort: {unknown_name('column', key, list(COLUMNS))}")
    return key


def records(rows: list[RunRow]) -> list[dict]:
    """The rows as JSON-ready dicts, keyed by :data:`COLUMNS`."""
    return [dataclasses.asdict(row) for row in rows]


def format_table(rows: list[RunRow]) -> str:
    """The rows as aligned text columns under a header of the column keys; ``-`` where a value
    is missing."""
    cells = [[_cell(key, getattr(row, key)) for key in COLUMNS] for row in rows]
    widths = [max(len(key), *(len(line[i]) for line in cells)) for i, key in enumerate(COLUMNS)]
    lines = [COLUMNS, *cells]
    return "\n".join(" ".join(_align(text, key, w) for text, key, w in zip(line, COLUMNS, widths))
                     .rstrip() for line in lines)


def _cell(key: str, value) -> str:
    if value is None:
        return "-"
    if key == "seconds":
        return f"{value:.1f}"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _align(text: str, key: str, width: int) -> str:
    return f"{text:<{width}}" if key in TEXT else f"{text:>{width}}"
