"""One writer per folder: an OS file lock on ``FOLDER/.lock``, held while a process writes there
(or on another file of the folder, e.g. one per cache being built; a waiting lock blocks until
the holder is done instead of refusing).

``flock`` is released by the kernel when the holder dies, however it dies, so a SIGKILL never
leaves a folder locked for good. The holder writes its PID into the file, so that a second process
can say who holds it. On release the file is removed; a process that locked a file which was
removed meanwhile (it lost the race with the release) tries again on the new one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import ModuleType

from deepnotes.errors import DeepnotesError

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # Windows: no flock; folders are not locked there
    fcntl = None

NAME = ".lock"
log = logging.getLogger(__name__)


class FolderLock:
    """``with FolderLock(folder):`` holds the folder's lock, or raises a one-line
    :class:`DeepnotesError` naming the PID that holds it."""

    def __init__(self, folder: str | os.PathLike, name: str = NAME, wait: bool = False):
        self.path = Path(folder) / name
        self.wait = wait  # block until the holder is done, rather than refuse
        self.fd: int | None = None

    def acquire(self) -> FolderLock:
        if fcntl is None or self.fd is not None:
            return self
        for _ in range(100):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_pid(fd)
                if not self.wait:
                    os.close(fd)
                    raise DeepnotesError(
                        f"{self.path.parent}: in use by another deepnotes process (PID "
                        f"{holder}); wait for it to end, or stop it") from None
                log.info("waiting for PID %s, which holds %s", holder, self.path)
                fcntl.flock(fd, fcntl.LOCK_EX)
            if _same_file(fd, self.path):
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self.fd = fd
                return self
            os.close(fd)  # the file we locked was removed by a releasing holder: lock the new one
        raise DeepnotesError(f"{self.path}: could not be locked")

    def moved(self, folder: str | os.PathLike) -> None:
        """The locked folder was renamed to ``folder`` (the lock moved with it)."""
        self.path = Path(folder) / NAME

    def release(self) -> None:
        if self.fd is None:
            return
        if _same_file(self.fd, self.path):  # not if the folder moved (and another took the name)
            self.path.unlink(missing_ok=True)  # while still held: nobody locks the removed file
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode().strip() or "unknown"
    except (OSError, UnicodeDecodeError):
        return "unknown"


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)
