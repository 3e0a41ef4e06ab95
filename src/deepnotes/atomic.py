"""Atomic file writes: a temporary file in the same folder, flushed to disk, then renamed.

A kill at any moment leaves either the old file or the new one, never half of one. The temporary
file is made by ``tempfile.mkstemp`` (O_EXCL, a random name: a planted file or symlink is never
followed) and named ``.NAME.PID.RANDOM.tmp``, so that :func:`sweep` can tell the leftovers of a
killed process from a live writer's file. After the rename the folder itself is flushed, so the
rename survives a power cut too.

Fault injection, for the tests only: with ``DEEPNOTES_KILL_AT=N`` in the environment the process
sends itself SIGKILL at its N-th commit point (each write and each rename here, and the run
folder's own steps, see :func:`commit_point`); ``DEEPNOTES_COMMIT_LOG=FILE`` appends one line
per commit point to FILE, so a test can count them.
"""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import tempfile
from pathlib import Path

_TEMP = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: mkstemp makes 0600 files, the result gets the usual 0666 & ~umask
_points = 0


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.chmod(tmp, 0o666 & ~_UMASK)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        commit_point(f"{path.name} written")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    sync_folder(path.parent)
    commit_point(f"{path.name} renamed")


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def csv_text(columns: list[str], rows: list[dict]) -> str:
    """Rows as CSV text under a header of ``columns`` (other keys ignored, None as empty)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write_csv(path: str | os.PathLike, columns: list[str], rows: list[dict]) -> None:
    """:func:`csv_text` written atomically."""
    write_text(path, csv_text(columns, rows))


def sync_folder(folder: str | os.PathLike) -> None:
    """fsync a folder, so that a rename or a new entry in it is on disk."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # a platform that cannot open folders (Windows): the rename is all there is
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the rename still happened
    finally:
        os.close(fd)


def sweep(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed processes left in ``folder``; return them.

    A file whose writer is still alive (its PID, part of the name, answers) is left alone."""
    removed = []
    for path in Path(folder).iterdir():
        match = _TEMP.match(path.name)
        if match and path.is_file() and not alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is named like one of this module's temporary files."""
    return bool(_TEMP.match(path.name))


def alive(pid: int) -> bool:
    """Whether process ``pid`` may still be writing (this process counts as not: its own
    leftovers are failed writes)."""
    if pid == os.getpid():
        return False  # this process writes one file at a time: its leftovers are failed writes
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process: leave its file alone
    return True


def commit_point(label: str) -> None:
    """A step after which a crash must be survivable (see the module docstring)."""
    global _points
    log, kill_at = os.environ.get("DEEPNOTES_COMMIT_LOG"), os.environ.get("DEEPNOTES_KILL_AT")
    if log is None and kill_at is None:
        return
    _points += 1
    if log:
        with open(log, "a") as f:
            f.write(f"{_points} {label}\n")
    if kill_at and _points == int(kill_at):
        os.kill(os.getpid(), signal.SIGKILL)
