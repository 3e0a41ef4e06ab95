"""A run folder's life: a safe name, a marked owner, one writer at a time, recovery after a crash.

- **Names.** ``--name`` is one plain folder name inside ``--out``; default names are numbered
  without a race (``os.mkdir`` claims a name or fails, and the next number is tried).
- **Ownership.** deepnotes marks what it makes: config.json carries ``"format": "deepnotes run"``.
  ``--overwrite`` and ``--resume`` touch only marked folders (or the empty start of one).
- **One writer.** The process that trains into a folder holds its lock (``deepnotes.lock``).
- **Replacing a run.** ``--overwrite`` moves the earlier run aside to ``OUT/.NAME.replaced`` and
  removes it once the new run has committed its first checkpoint; if the new run fails before
  that, the earlier one is moved back; after a kill it waits there, and the messages say so.
- **Recovery.** Before a run is continued, the temporary files of killed writers are removed and
  the files derived from the committed checkpoint are rewritten from it
  (:func:`deepnotes.train.checkpoint.repair`).
- **Provenance.** config.json records the versions and the git commit that made the run.
- **Loading.** :func:`load_trained` gives a run's network with its committed weights.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import torch

import deepnotes
from deepnotes import atomic
from deepnotes.errors import DeepnotesError
from deepnotes.lock import NAME as LOCK_NAME
from deepnotes.lock import FolderLock
from deepnotes.models.weights import load_checked
from deepnotes.runs.build import build_model
from deepnotes.runs.config import MARKER, RunConfig
from deepnotes.train import checkpoint

log = logging.getLogger(__name__)

DERIVED_AT_THE_END = ("metrics.json", "learning_curves.png", "confusion_matrix.png")


class RunFolder:
    """A run folder this process writes into: its path, its lock, the earlier run it replaces."""

    def __init__(self, path: Path, lock: FolderLock, backup: Path | None = None):
        self.path, self.lock, self.backup = path, lock, backup

    def committed(self) -> None:
        """Called after each checkpoint: once the new run has one, the replaced run goes."""
        if self.backup is not None:
            _remove(self.backup)
            self.backup = None

    def abandon(self) -> None:
        """The run failed: without a checkpoint it leaves nothing, and the run it was replacing
        comes back."""
        if has_checkpoint(self.path):
            return
        _remove(self.path)
        if self.backup is not None and self.backup.is_dir():
            os.rename(self.backup, self.path)
            log.warning("the new run made no checkpoint; the earlier run is back in %s", self.path)
            self.backup = None

    def close(self) -> None:
        self.lock.release()

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        try:
            if kind is not None:
                self.abandon()
        finally:
            self.close()


def check_name(name: str) -> str:
    """``--name`` is one visible folder name: no separator, not ``.``/``..``, not absolute."""
    seps = {os.sep, "/", *([os.altsep] if os.altsep else [])}
    if not name or any(s in name for s in seps) or name.startswith(".") or "\0" in name:
        raise DeepnotesError(f"--name {name!r}: expected a plain folder name (letters, digits, "
                             "-, _; no path, not starting with '.'); use --out for the folder "
                             "that holds it")
    return name


def create(out: str | Path, name: str | None, default_name: str, overwrite: bool,
           resumable: bool = True) -> RunFolder:
    """A new, locked run folder in ``out``: ``name``, or ``default_name`` numbered if taken.
    ``resumable``: whether the command can go on with an existing one (--resume)."""
    root = _writable_root(out)
    if name is None:
        path = _claim_numbered(root, default_name)
        return RunFolder(path, FolderLock(path).acquire())
    path = root / check_name(name)
    backup = _clear(path) if overwrite else None
    try:
        os.mkdir(path)
    except FileExistsError:
        if not resumable:
            raise DeepnotesError(f"--name {name}: {path} exists; --overwrite to replace it, or "
                                 "choose another name") from None
        if is_ours(path) and not has_checkpoint(path):  # nothing there to resume
            raise DeepnotesError(f"--name {name}: {path} exists, but stopped before its first "
                                 "checkpoint; --overwrite to start it again") from None
        raise DeepnotesError(f"--name {name}: {path} exists; use --resume {path} to continue it "
                             "or --overwrite to replace it") from None
    atomic.commit_point("run folder made")
    return RunFolder(path, FolderLock(path).acquire(), backup)


def new_container(out: str | Path, name: str | None, default_name: str) -> Path:
    """A fresh folder for a group of runs (compare, tune): ``name``, or a numbered default."""
    root = _writable_root(out)
    if name is None:
        return _claim_numbered(root, default_name)
    path = root / check_name(name)
    try:
        os.mkdir(path)
    except FileExistsError:
        raise DeepnotesError(f"--name {name}: {path} exists; choose another name") from None
    return path


def is_group(path: Path, summary: str, member) -> bool:
    """A folder of runs a command wrote: its ``summary`` file, or only run folders whose names
    ``member(name)`` accepts (the group was stopped before its summary)."""
    path = Path(path)
    if (path / summary).is_file():
        return True
    entries = [p for p in path.iterdir() if not p.name.startswith(".")] if path.is_dir() else []
    return bool(entries) and all(p.is_dir() and member(p.name) and (p / "config.json").is_file()
                                 for p in entries)


def group_folder(out: str | Path, name: str | None, overwrite: bool, default_name: str,
                 ours, what: str) -> Path:
    """A new folder for a group of runs: ``out/name``, or ``default_name`` numbered if taken.
    ``overwrite`` replaces an earlier ``name`` that ``ours(path)`` recognises, or an empty
    folder, and nothing else (``what`` names the kind in the refusal)."""
    if name:
        existing = Path(out) / check_name(name)
        if existing.exists() and not overwrite:
            raise DeepnotesError(f"--name {name}: {existing} exists; use --overwrite to "
                                 "replace it")
        if existing.exists():
            if not (existing.is_dir() and (ours(existing) or not any(existing.iterdir()))):
                raise DeepnotesError(f"--overwrite: {existing} is not a {what} folder; "
                                     "not removing it")
            shutil.rmtree(existing)
    return new_container(out, name, default_name)


@contextlib.contextmanager
def keeping_runs(group: Path, what: str):
    """A group of runs being made in ``group``: if making it stops, the folder goes when no run
    in it has a checkpoint (nothing worth keeping), else it stays and a warning says where."""
    try:
        yield
    except BaseException:
        if not any(group.glob("*/state.safetensors")):
            shutil.rmtree(group, ignore_errors=True)
        else:
            log.warning("the %s stopped; the runs it made are kept in %s", what, group)
        raise


def check_continuable(path: Path, what: str = "--resume") -> None:
    """Refuse, in one line that says what to do instead, a folder that is not a deepnotes run
    or has no checkpoint to continue from."""
    if not is_ours(path):
        raise DeepnotesError(f"{what} {path}: not a deepnotes run folder (no config.json marked "
                             "as one)")
    if not has_checkpoint(path):
        raise DeepnotesError(f"{what} {path}: no checkpoint in it yet (stopped before its first "
                             f"epoch ended); start again with --name {path.name} --overwrite"
                             f"{_restore_hint(path)}")


def open_to_continue(run_dir: str | Path, what: str = "--resume") -> RunFolder:
    """A marked run folder with a committed checkpoint, locked and recovered (see the module
    docstring), to train on from its last checkpoint."""
    path = Path(run_dir)
    check_continuable(path, what)
    lock = FolderLock(path).acquire()
    try:
        atomic.sweep(path)
        checkpoint.repair(path)
        _remove(backup_of(path))  # a replaced run: the new one has a checkpoint, so it goes
    except BaseException:
        lock.release()
        raise
    return RunFolder(path, lock)


def forget_final_results(run: RunFolder) -> None:
    """Before training a finished run further: its metrics and plots described the old end."""
    for name in DERIVED_AT_THE_END:
        (run.path / name).unlink(missing_ok=True)


def has_checkpoint(path: Path) -> bool:
    return (path / "state.safetensors").is_file()


def is_ours(path: Path) -> bool:
    """Whether deepnotes made ``path``: a marked config.json (or one from before the marker,
    with deepnotes' provenance), or nothing but the lock and temporary files of its start."""
    try:
        config = json.loads((path / "config.json").read_text())
    except FileNotFoundError:
        return path.is_dir() and all(p.name == LOCK_NAME or atomic.is_temporary(p)
                                     for p in path.iterdir())
    except (OSError, ValueError, RecursionError):  # RecursionError: nested too deep
        return False
    if not isinstance(config, dict):
        return False
    legacy = isinstance(config.get("provenance"), dict) and "deepnotes" in config["provenance"]
    return config.get("format") == MARKER["format"] or legacy


def backup_of(path: Path) -> Path:
    """Where ``--overwrite`` keeps the run it replaces until the new one has a checkpoint."""
    return path.parent / f".{path.name}.replaced"


def _clear(path: Path) -> Path | None:
    """Make room for a new run at ``path`` (``--overwrite``); return the earlier run's backup."""
    backup = backup_of(path)
    if backup.exists() and has_checkpoint(path):
        _remove(backup)  # left by a replacement that committed: stale
    if not path.exists():
        return backup if backup.exists() else None
    if not is_ours(path):
        raise DeepnotesError(f"--overwrite: {path} is not a deepnotes run folder (no config.json "
                             "marked as one); not removing it")
    lock = FolderLock(path).acquire()  # nobody may be training in it
    if has_checkpoint(path) and not backup.exists():
        os.rename(path, backup)
        lock.moved(backup)
        atomic.commit_point("earlier run moved aside")
    else:  # nothing worth keeping, or the backup already holds the earlier run
        _remove(path)
    lock.release()
    return backup if backup.exists() else None


def _restore_hint(path: Path) -> str:
    backup = backup_of(path)
    if backup.is_dir():
        return f", or bring back the run it replaced: rm -r {path} && mv {backup} {path}"
    return ""


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
        atomic.commit_point(f"{path.name} removed")


def _claim_numbered(root: Path, name: str) -> Path:
    for n in range(1, 100_000):
        path = root / (name if n == 1 else f"{name}-{n}")
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        atomic.commit_point("run folder made")
        return path
    raise DeepnotesError(f"--out {root}: no free name like {name}-N")


def _writable_root(out: str | Path) -> Path:
    root = Path(out)
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=root, prefix=f".write-test.{os.getpid()}.",
                                     suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise DeepnotesError(f"--out {out}: cannot write there ({exc.strerror})") from None
    return root



def provenance() -> dict:
    """Versions and the git commit, so a result can be traced to the code that made it."""
    return {"deepnotes": deepnotes.__version__, "torch": torch.__version__,
            "python": platform.python_version(), "git_commit": _git_commit(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=os.path.dirname(__file__))
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def load_trained(run_dir: str | Path, config: RunConfig) -> torch.nn.Module:
    """The run's model with its trained weights (``model.safetensors``, or the committed
    checkpoint's where a kill left that file behind)."""
    model = build_model(config)
    load_checked(model, checkpoint.committed_weights(Path(run_dir)),
                 Path(run_dir) / "model.safetensors")
    return model.eval()


def read_vocab(run_dir: str | Path, config: RunConfig) -> tuple[list[str], list[str]]:
    """A sequence run's vocab.json: its input tokens (``config.in_channels`` of them, the
    embedding's rows) and its output tokens (the run's classes), checked, so a damaged file is
    refused in one line."""
    path = Path(run_dir) / "vocab.json"
    try:
        vocab = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise DeepnotesError(f"{path}: cannot read the run's vocabulary ({exc})") from None
    inputs = vocab.get("input") if isinstance(vocab, dict) else None
    outputs = vocab.get("output") if isinstance(vocab, dict) else None
    if not (isinstance(inputs, list) and len(inputs) == config.in_channels
            and all(isinstance(t, str) for t in inputs) and outputs == config.classes):
        raise DeepnotesError(f"{path}: expected {{\"input\": the run's {config.in_channels} "
                             "input tokens, \"output\": its classes in config.json}, as "
                             "deepnotes train wrote it; the file was changed")
    return inputs, outputs
