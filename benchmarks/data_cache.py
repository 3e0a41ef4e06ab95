"""The data path on a folder of PNGs: deepnotes' decoded cache against what users write.

The folder: ``--images`` 64x64 RGB PNGs in 10 class folders, made once in a temporary folder. The
peer is the way a user writes it: a torch ``Dataset`` that opens each PNG with Pillow in
``__getitem__`` and a ``DataLoader`` with 2 workers, shuffled, batches of 256. Ours: the folder
read with ``--data-cache on`` (the first epoch includes building the cache: decoding every file
in worker processes) and batches streamed from the cache's memory map. For both, images/s of the
data path alone (batches drawn and converted to float, no model), for the first epoch and a
later one, and the peak anonymous memory (RssAnon, not the page cache) of the process and its
workers while the epoch runs.

    python benchmarks/data_cache.py                   # 20,000 images, a few minutes on 2 cores
    python benchmarks/data_cache.py --images 200000   # the issue's size (about 15 min here)
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from deepnotes.data import Batches, Normalizer
from deepnotes.data.images import load_image_folder

SIZE, BATCH, CLASSES = 64, 256, 10


def make_folder(root: Path, n: int) -> Path:
    """``n`` random-noise 64x64 RGB PNGs, ``n / 10`` a class (made once per ``root``)."""
    done = root / f".made-{n}"
    if done.exists():
        return root
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"class{i % CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)  # compressible, like photos
        pixels = np.kron(base, np.ones((8, 8, 1), np.uint8))
        Image.fromarray(pixels).save(folder / f"{i}.png")
    done.touch()
    return root


class PngFolder(TorchDataset):
    """The peer: every example opened and decoded with Pillow in __getitem__."""

    def __init__(self, root: Path):
        self.items = sorted((p, int(p.parent.name[5:])) for p in root.glob("class*/*.png"))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path, label = self.items[i]
        with Image.open(path) as img:
            x = torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.uint8).copy())
        return x.permute(2, 0, 1), label


def proc_bytes(path: str, field: str) -> int:
    """A ``FIELD: N kB`` line of a /proc file, in bytes (0 once the process is gone)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def rss_anon(pid: int) -> int:
    """RssAnon of ``pid`` in bytes: its resident anonymous pages, shared ones included."""
    return proc_bytes(f"/proc/{pid}/status", "RssAnon:")


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*") if Path(f"/proc/{p}/task").exists() else []:
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def pss_anon(pid: int) -> int:
    """Pss_Anon of ``pid`` in bytes: its anonymous pages, each shared one divided among the
    processes that share it."""
    return proc_bytes(f"/proc/{pid}/smaps_rollup", "Pss_Anon:")


class PeakMemory:
    """The largest summed RssAnon of a process tree (this process's by default), sampled every
    20 ms meanwhile, and the largest summed Pss_Anon, sampled every 0.5 s: the pages a forked
    worker still shares with its parent count in full in each one's RssAnon, and once in all in
    Pss_Anon. (Pss needs the kernel to walk every mapped page, the 2.4 GB mapping of a large
    cache included: every 20 ms it would take half a core from the process measured.)"""

    def __init__(self, pid: int | None = None):
        self.pid = pid or os.getpid()

    def __enter__(self):
        self.peak, self.peak_pss, self.running = 0, 0, True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        n = 0
        while self.running:
            pids = tree(self.pid)
            self.peak = max(self.peak, sum(rss_anon(p) for p in pids))
            if n % 25 == 0:
                self.peak_pss = max(self.peak_pss, sum(pss_anon(p) for p in pids))
            n += 1
            time.sleep(0.02)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()


def epoch_peer(loader: DataLoader) -> tuple[float, int]:
    """(images/s, peak anonymous bytes) of one epoch of the peer's batches as float."""
    n, start = 0, time.perf_counter()
    with PeakMemory() as mem:
        for x, _ in loader:
            x = x.float().div_(255)
            n += len(x)
    return n / (time.perf_counter() - start), mem.peak


def open_cache(root: Path, cache_dir: Path) -> Batches:
    """The folder through its cache (built when there is none), as streamed shuffled batches."""
    data = load_image_folder(root, SIZE, cache="on", cache_dir=cache_dir)
    return Batches(data.x, data.y, torch.arange(len(data.y)), BATCH,
                   Normalizer([0.5] * 3, [0.25] * 3, 1 / 255), shuffle=True, seed=0, stream=True)


def epoch_ours(batches: Batches | None, root: Path, cache_dir: Path,
               epoch: int) -> tuple[float, int, Batches]:
    """(images/s, peak anonymous bytes, the batches) of one epoch through the cache; without
    ``batches`` the folder is opened first (and the cache built) within the time."""
    start = time.perf_counter()
    with PeakMemory() as mem:
        batches = batches or open_cache(root, cache_dir)
        n = sum(len(x) for x, _ in batches.epoch(epoch))
    return n / (time.perf_counter() - start), mem.peak, batches


def measure(n: int, workdir: Path) -> dict:
    root = make_folder(workdir / "photos", n)
    cache_dir = workdir / f"cache-{os.getpid()}"
    out = {}
    out["ours_first"], out["ours_first_mem"], batches = epoch_ours(None, root, cache_dir, 0)
    out["ours_later"], out["ours_later_mem"], _ = epoch_ours(batches, root, cache_dir, 1)
    del batches
    start = time.perf_counter()
    open_cache(root, cache_dir)  # a later run: the listing, the checksums, the memory map
    out["ours_reopen_s"] = time.perf_counter() - start
    gc.collect()  # the peer's listing is made after ours is gone: neither counts the other's
    loader = DataLoader(PngFolder(root), batch_size=BATCH, shuffle=True, num_workers=2)
    out["peer_first"], out["peer_first_mem"] = epoch_peer(loader)
    out["peer_later"], out["peer_later_mem"] = epoch_peer(loader)
    return out


def rows(quick: bool = False, device: str = "cpu") -> list[dict]:
    """The suite's rows (CPU). Quick mode: 4,000 images; else 20,000."""
    n = 4000 if quick else 20_000
    with tempfile.TemporaryDirectory() as tmp:
        r = measure(n, Path(tmp))
    peer = "Pillow in Dataset.__getitem__, DataLoader 2 workers"
    return [{"task": f"data path, later epoch, {n:,} PNGs 64x64, img/s", "peer": peer,
             "unit": "img/s", "ours": r["ours_later"], "peer_figure": r["peer_later"],
             "compare": "ours/peer", "goal": ">= 3"},
            {"task": f"data path, first epoch (cache build), {n:,} PNGs, img/s", "peer": peer,
             "unit": "img/s", "ours": r["ours_first"], "peer_figure": r["peer_first"],
             "compare": "ours/peer", "goal": None}]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=20_000, help="PNGs in the folder (20000)")
    ap.add_argument("--workdir", type=Path, help="where the folder and caches go (a temporary "
                    "folder); the folder is kept there and reused")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        r = measure(args.images, args.workdir or Path(tmp))
    mib = 1 / 2**20
    print(f"{args.images} PNGs of {SIZE}x{SIZE} RGB, batches of {BATCH}, data path only")
    for when in ("first", "later"):
        print(f"{when} epoch: deepnotes cache {r[f'ours_{when}']:,.0f} img/s "
              f"(peak RssAnon {r[f'ours_{when}_mem'] * mib:,.0f} MiB), peer "
              f"{r[f'peer_{when}']:,.0f} img/s (peak RssAnon {r[f'peer_{when}_mem'] * mib:,.0f} "
              f"MiB), ratio {r[f'ours_{when}'] / r[f'peer_{when}']:.2f}")
    print(f"a later run opens the cache (listing, checksums) in {r['ours_reopen_s']:.2f} s")


if __name__ == "__main__":
    main()
