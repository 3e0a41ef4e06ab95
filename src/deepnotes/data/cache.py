"""A decoded cache of an image folder: every image decoded once, resized, and kept on disk as
fixed-size uint8 records that training reads through a memory map.

Decoding JPEGs and PNGs is the slow part of reading photos, and holding them decoded in RAM is
the wall a large folder hits (200,000 RGB images of 64x64 are 2.4 GB). The cache decodes each
file once, in worker processes, into ``records.u8`` ((m, n_C, n_H, n_W) uint8, C order) beside
``labels.npy`` and ``meta.json``; a later run maps the file and reads only the batches it draws,
so the process's own memory stays flat and the operating system's page cache does the rest.

- **Key.** A cache folder is named by a hash of the folder's listing (each file's path, size and
  modification time), the image size, the channels asked for (``--channels``: grey and RGB
  records of one folder are two caches) and the cache format: a changed folder gets a new cache.
- **Commit.** A cache is built in ``KEY.building.PID`` and renamed to ``KEY`` when complete, so a
  killed build leaves no cache (its leftovers are removed by the next build) and two builders
  never mix their records.
- **One builder.** A build holds the lock ``KEY.lock`` (``flock``, released by the kernel when
  its holder dies); another process that wants the same cache (another run, a data-parallel
  rank, a node on the same shared filesystem) waits for it and then opens what it built.
- **Checks.** ``meta.json`` holds a CRC-32 of every block of records; a cache whose size or
  checksums disagree is reported in one warning and rebuilt.

The directory is ``--cache-dir``, else ``$DEEPNOTES_CACHE_DIR``, else ``$XDG_CACHE_HOME/deepnotes``
(``~/.cache/deepnotes``).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import json
import logging
import mmap
import multiprocessing
import os
import shutil
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from deepnotes import atomic
from deepnotes.errors import DeepnotesError, describe
from deepnotes.lock import FolderLock

log = logging.getLogger(__name__)

FORMAT = "deepnotes-image-cache-1"
BLOCK = 1024  # records a checksum covers, and a worker decodes at a time
GREY = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})


@dataclass
class Cached:
    """A built cache: the records as a (m, n_C, size, size) uint8 tensor mapped from disk, the
    labels, the indices into the listing of the files that could not be read, and a function
    that asks for records ahead of their use."""

    x: torch.Tensor
    y: torch.Tensor
    bad: list[tuple[int, str]]
    readahead: Callable[[torch.Tensor], None] | None = None  # will_need for these records


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """--cache-dir, else $DEEPNOTES_CACHE_DIR, else $XDG_CACHE_HOME/deepnotes (~/.cache)."""
    if cache_dir:
        return Path(cache_dir)
    if os.environ.get("DEEPNOTES_CACHE_DIR"):
        return Path(os.environ["DEEPNOTES_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deepnotes"


def cache_key(root: Path, files: list[Path], size: int, channels: int | None = None) -> str:
    """A hash of the listing (relative path, bytes, mtime of each file), the size, the channels
    asked for (None: the folder's own, the key of caches made before ``--channels``), the
    format."""
    asked = "" if channels is None else f"|channels={channels}"
    h = hashlib.sha256(f"{FORMAT}|{size}{asked}".encode())
    for path in files:
        st = path.stat()
        h.update(f"{path.relative_to(root).as_posix()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def open_or_build(root: Path, files: list[Path], labels: list[int], size: int, read,
                  cache_dir=None, progress: bool = False, channels: int | None = None) -> Cached:
    """The cache of ``files`` (decoded by ``read(path, size)``) at ``size``: reused when it is
    whole, else built (again), or waited for while another process builds it. ``channels``:
    the n_C that ``read`` converts every image to; None: 1 if every file is grey, else 3."""
    base = cache_root(cache_dir)
    folder = base / "images" / cache_key(root, files, size, channels)
    if folder.is_dir():
        try:
            return _open(folder)
        except DeepnotesError as exc:
            log.warning("%s; rebuilding it", exc)
            shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FolderLock(folder.parent, f"{folder.name}.lock", wait=True):  # one builder at a time
        if not folder.is_dir():  # else another process built it while this one waited
            _build(folder, files, labels, size, read, progress, root.name, channels)
    return _open(folder)


def _open(folder: Path) -> Cached:
    """Map a built cache after checking its size and checksums."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        labels = np.load(folder / "labels.npy")
        shape, count = tuple(int(n) for n in meta["shape"]), int(meta["count"])
        crc32, bad = list(meta["crc32"]), [(int(i), str(why)) for i, why in meta["bad"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DeepnotesError(f"image cache {folder} is damaged ({describe(exc)})") from None
    path = folder / "records.u8"
    record = int(np.prod(shape))
    if meta.get("format") != FORMAT or not path.is_file() or \
            path.stat().st_size != count * record or len(labels) != count:
        raise DeepnotesError(f"image cache {folder} is incomplete or of another format")
    pages = None
    if count:
        with open(path, "rb") as f:  # copy-on-write: writable for torch, never written back
            pages = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        records = np.frombuffer(pages, np.uint8).reshape(count, *shape)
    else:
        records = np.zeros((0, *shape), np.uint8)
    if _checksums(records) != crc32:
        raise DeepnotesError(f"image cache {folder} is corrupt (a checksum differs)")
    readahead = functools.partial(will_need, pages, record) if pages is not None else None
    return Cached(torch.from_numpy(records), torch.from_numpy(labels.astype(np.int64)), bad,
                  readahead)


def will_need(pages: mmap.mmap, record: int, idx: torch.Tensor) -> None:
    """Ask the kernel to read records ``idx`` of a mapped cache into the page cache in the
    background (``madvise(MADV_WILLNEED)``, a run of neighbours at a time), so that gathering
    them a step later does not wait for the disk; nothing is read into this process."""
    if not hasattr(mmap, "MADV_WILLNEED") or not len(idx):
        return
    rows = idx.cpu().unique()  # sorted
    starts = torch.ones(len(rows), dtype=torch.bool)
    starts[1:] = rows[1:] != rows[:-1] + 1
    firsts = rows[starts].tolist()
    lasts = rows[torch.cat([starts[1:], torch.tensor([True])])].tolist()
    for first, last in zip(firsts, lasts):
        begin = first * record // mmap.PAGESIZE * mmap.PAGESIZE
        pages.madvise(mmap.MADV_WILLNEED, begin, (last + 1) * record - begin)


def _checksums(records: np.ndarray) -> list[int]:
    return [zlib.crc32(np.ascontiguousarray(records[i:i + BLOCK]).data)
            for i in range(0, len(records), BLOCK)]


def _build(folder: Path, files: list[Path], labels: list[int], size: int, read,
           progress: bool, name: str, channels: int | None = None) -> Path:
    """Decode every file into a new cache folder, then commit it by renaming."""
    _sweep(folder)
    work = folder.with_name(f"{folder.name}.building.{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    channels = channels or (1 if all(_is_grey(p) for p in files) else 3)
    shape = (channels, size, size)
    out = np.memmap(work / "records.tmp", np.uint8, mode="w+",
                    shape=(max(1, len(files)), *shape))
    bad: list[tuple[int, str]] = []
    jobs = [(start, files[start:start + BLOCK], size, channels, read)
            for start in range(0, len(files), BLOCK)]
    log.info("decoding %d images of %s into the cache %s", len(files), name, folder)
    bar = tqdm(total=len(files), desc=f"caching {name} in {folder.parent}", unit="img",
               file=sys.stderr, disable=not progress)
    with bar, _pool(len(jobs)) as pool:
        for start, block, failed in pool.imap_unordered(_decode_block, jobs):
            out[start:start + len(block)] = block
            bad += [(start + i, why) for i, why in failed]
            bar.update(len(block))
    out.flush()
    bad.sort()
    keep = np.setdiff1d(np.arange(len(files)), [i for i, _ in bad])
    if bad or not len(files):
        _compact(out, keep, work / "records.u8")
        del out
        (work / "records.tmp").unlink()
    else:  # every file decoded: the records are in place already
        del out
        with open(work / "records.tmp", "rb") as f:
            os.fsync(f.fileno())
        os.rename(work / "records.tmp", work / "records.u8")
    kept = np.memmap(work / "records.u8", np.uint8, mode="r", shape=(len(keep), *shape)) \
        if len(keep) else np.zeros((0, *shape), np.uint8)
    np.save(work / "labels.npy", np.asarray(labels, dtype=np.int64)[keep])
    meta = {"format": FORMAT, "count": int(len(keep)), "shape": list(shape), "size": size,
            "crc32": _checksums(kept), "bad": [[i, why] for i, why in bad]}
    del kept
    atomic.write_text(work / "meta.json", json.dumps(meta) + "\n")
    try:
        os.rename(work, folder)
    except OSError:  # another process committed the same cache first
        shutil.rmtree(work, ignore_errors=True)
    return folder


def _compact(out: np.ndarray, keep: np.ndarray, path: Path) -> None:
    """The kept records, in order, into ``path`` (a block at a time), flushed to disk."""
    with open(path, "wb") as f:
        for i in range(0, len(keep), BLOCK):
            idx = keep[i:i + BLOCK]
            f.write(np.ascontiguousarray(out[idx]).tobytes())
        f.flush()
        os.fsync(f.fileno())


def _decode_block(job):
    """A worker's block: (start, records (k, n_C, size, size) uint8, [(i, reason)] failed)."""
    start, paths, size, channels, read = job
    block = np.zeros((len(paths), channels, size, size), np.uint8)
    failed = []
    for i, path in enumerate(paths):
        try:
            array = read(path, size)
        except Exception as e:  # any decoder failure means a bad file
            failed.append((i, describe(e)))
            continue
        if array.ndim == 2:
            array = array[:, :, None]
        if channels == 3 and array.shape[2] == 1:
            array = np.repeat(array, 3, axis=2)
        block[i] = array.transpose(2, 0, 1)
    return start, block, failed


def _is_grey(path: Path) -> bool:
    """Whether a file decodes to one channel (its header's mode); unreadable files count as grey
    (they are reported when decoded)."""
    try:
        with Image.open(path) as img:
            return img.mode in GREY
    except Exception:  # noqa: BLE001 - a bad file is reported by the decoder
        return True


@contextlib.contextmanager
def _pool(jobs: int):
    """Worker processes for decoding (none for a single block). Forked workers share the
    parent's memory until they write to it, and Python's garbage collector would write to every
    object it scans (the listing of a large folder among them), copying the parent's heap into
    each worker; ``gc.freeze`` keeps the objects that exist at the fork out of their scans."""
    workers = min(jobs, os.cpu_count() or 1)
    if workers <= 1:
        yield _InProcess()
        return
    gc.freeze()
    try:
        with multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn").Pool(
                workers) as pool:
            yield pool
    finally:
        gc.unfreeze()


class _InProcess:
    def imap_unordered(self, fn, jobs):
        return map(fn, jobs)


def _sweep(folder: Path) -> None:
    """Remove the leftovers of builds of ``folder`` whose process is gone."""
    for other in folder.parent.glob(f"{folder.name}.building.*"):
        pid = other.name.rsplit(".", 1)[-1]
        if pid.isdigit() and not atomic.alive(int(pid)):
            shutil.rmtree(other, ignore_errors=True)

