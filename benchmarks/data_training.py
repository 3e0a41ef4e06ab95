"""Training on a folder of PNGs: deepnotes' decoded cache against what users write, and memory
that stays flat as the folder grows.

Each measurement runs in a fresh process (so that one's allocations never count in another's
memory) while this process samples the peak anonymous memory (RssAnon: not the page cache) of
that process and its workers every 20 ms. The same network, optimizer (momentum 0.9) and loop
train on both data paths:

- **ours**: the folder read with ``--data-cache on``: decoded once into the cache (the first
  epoch includes that build; a later epoch opens the cache), batches streamed from its memory
  map a batch ahead, shuffled, normalised;
- **peer**: a torch ``Dataset`` that opens each PNG with Pillow in ``__getitem__`` (resized to the
  model's input size when it differs), a ``DataLoader`` with 2 workers, shuffled.

A measurement trains ``--steps`` mini-batches (0: a whole epoch) and reports images/s. The first
epoch's figure for ours is ``N / (build + N / rate)``: the cache build (timed) plus an epoch at the
rate measured; with ``--steps 0`` that is the epoch itself.

    python -m benchmarks.data_training --folder DIR --model lenet5 --steps 0
    python -m benchmarks.data_training --folder DIR --model resnet18 --image-size 64 --steps 30
    python -m benchmarks.data_training --flat DIR_20000 DIR_200000   # deepnotes train, LeNet-5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from deepnotes.data import Batches, Normalizer
from deepnotes.data.images import load_image_folder
from deepnotes.models import create_model

try:
    from benchmarks.data_cache import PeakMemory
except ImportError:  # run as a script (python benchmarks/data_training.py): its folder is the path
    from data_cache import PeakMemory  # type: ignore[no-redef]

BATCH = {"lenet5": 256, "resnet18": 128}
ROOT = Path(__file__).resolve().parents[1]
MEAN, STD = [0.5] * 3, [0.25] * 3


class PngFolder(TorchDataset):
    """The peer: every example opened, decoded (and resized) with Pillow in __getitem__."""

    def __init__(self, root: Path, size: int):
        self.items = sorted((p, int(p.parent.name[5:])) for p in root.glob("class*/*.png"))
        self.size = size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path, label = self.items[i]
        with Image.open(path) as img:
            img = img.convert("RGB")
            if img.size != (self.size, self.size):
                img = img.resize((self.size, self.size), Image.BILINEAR)
            x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())
        return x.permute(2, 0, 1), label


def train(model, batches, steps: int) -> tuple[int, float]:
    """(images, seconds) of ``steps`` SGD steps (every batch when 0) on (x, y) batches."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    n, start = 0, time.perf_counter()
    for i, (x, y) in enumerate(batches):
        if steps and i == steps:
            break
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
        n += len(x)
    return n, time.perf_counter() - start


def worker(args) -> dict:
    """One measurement in this (fresh) process."""
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=10, in_channels=3)
    size = args.image_size or model.input_size
    batch = BATCH[args.model]
    start = time.perf_counter()
    if args.worker == "peer":
        loader = DataLoader(PngFolder(Path(args.folder), size), batch_size=batch, shuffle=True,
                            num_workers=2, drop_last=True)
        norm = Normalizer(MEAN, STD, 1 / 255)
        setup, total = time.perf_counter() - start, len(loader.dataset)
        n, seconds = train(model, ((norm(x), y) for x, y in loader), args.steps)
    else:
        data = load_image_folder(args.folder, size, cache="on", cache_dir=args.cache_dir,
                                 progress=False)
        batches = Batches(data.x, data.y, torch.arange(len(data.y)), batch,
                          Normalizer(MEAN, STD, 1 / 255), shuffle=True, drop_last=True,
                          stream=True)
        setup, total = time.perf_counter() - start, len(data.y)
        n, seconds = train(model, batches.epoch(args.epoch), args.steps)
    return {"setup_s": setup, "images": n, "seconds": seconds, "ips": n / seconds,
            "total": total}


def measure(folder: Path, model: str, kind: str, cache_dir: Path, steps: int,
            image_size: int | None, epoch: int = 0) -> dict:
    """Run one measurement in a child process; its result and peak RssAnon (bytes)."""
    cmd = [sys.executable, "-m", "benchmarks.data_training", "--worker", kind, "--folder",
           str(folder), "--model", model, "--cache-dir", str(cache_dir), "--steps", str(steps),
           "--epoch", str(epoch)]
    if image_size:
        cmd += ["--image-size", str(image_size)]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    with PeakMemory(child.pid) as peak:
        out, _ = child.communicate()
    if child.returncode:
        raise SystemExit(f"{kind} on {folder} failed (status {child.returncode})")
    return {**json.loads(out.strip().splitlines()[-1]), "peak": peak.peak,
            "peak_pss": peak.peak_pss}


def throughput(args, cache_dir: Path) -> None:
    """First and later epochs of ours against the peer's, one model."""
    folder, model, steps = Path(args.folder), args.model, args.steps
    first = measure(folder, model, "ours", cache_dir, steps, args.image_size)  # builds
    later = measure(folder, model, "ours", cache_dir, steps, args.image_size, epoch=1)
    peer = measure(folder, model, "peer", cache_dir, steps, args.image_size)
    n = first["total"]
    first_ips = n / (first["setup_s"] + n / first["ips"])
    mib = 1 / 2**20

    def memory(r: dict) -> str:
        return f"peak RssAnon {r['peak'] * mib:,.0f} MiB, Pss_Anon {r['peak_pss'] * mib:,.0f} MiB"

    print(f"{model} on {n:,} PNGs in {folder}, {steps or 'all'} steps a measurement")
    print(f"first epoch: ours {first_ips:,.0f} img/s (cache built in {first['setup_s']:.1f} s, "
          f"then {first['ips']:,.0f} img/s; {memory(first)}), peer {peer['ips']:,.0f} img/s "
          f"({memory(peer)}), ratio {first_ips / peer['ips']:.2f}")
    print(f"later epoch: ours {later['ips']:,.0f} img/s (opened in {later['setup_s']:.1f} s; "
          f"{memory(later)}), peer {peer['ips']:,.0f} img/s, ratio "
          f"{later['ips'] / peer['ips']:.2f}")


def run_cli(folder: Path, cache_dir: Path, out: Path) -> tuple[float, int, int]:
    """(seconds, peak RssAnon, peak Pss_Anon) of ``deepnotes train`` LeNet-5, one epoch."""
    cmd = [sys.executable, "-m", "deepnotes", "train", "--data", str(folder), "--model", "lenet5",
           "--epochs", "1", "--batch-size", "256", "--data-cache", "on", "--cache-dir",
           str(cache_dir), "--out", str(out), "--quiet"]
    start = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    with PeakMemory(child.pid) as peak:
        child.wait()
    if child.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed (status {child.returncode})")
    return time.perf_counter() - start, peak.peak, peak.peak_pss


def flat(small: Path, large: Path, cache_dir: Path) -> None:
    """Peak RssAnon of ``deepnotes train`` (LeNet-5, one epoch, through the cache): a small
    folder against a large one, when the run builds the cache and when it reuses it."""
    mib, peaks = 1 / 2**20, []
    for folder in (small, large):
        out = cache_dir / f"runs-{folder.name}"
        built_s, *built = run_cli(folder, cache_dir, out)
        again_s, *again = run_cli(folder, cache_dir, out)
        peaks.append((*built, *again))
        print(f"{folder}: deepnotes train, 1 epoch: building the cache {built_s:.0f} s, peak "
              f"RssAnon {built[0] * mib:,.0f} MiB (Pss_Anon {built[1] * mib:,.0f}); reusing it "
              f"{again_s:.0f} s, peak RssAnon {again[0] * mib:,.0f} MiB (Pss_Anon "
              f"{again[1] * mib:,.0f})")
    ratios = [large / small for small, large in zip(*peaks)]
    print(f"large / small peak: building {ratios[0]:.2f} RssAnon, {ratios[1]:.2f} Pss_Anon; "
          f"reusing {ratios[2]:.2f} RssAnon, {ratios[3]:.2f} Pss_Anon (goal <= 1.25)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", help="a folder of class*/ PNGs")
    ap.add_argument("--model", default="lenet5", choices=sorted(BATCH))
    ap.add_argument("--image-size", type=int, help="n_H = n_W (default: the model's own)")
    ap.add_argument("--steps", type=int, default=0, help="mini-batches a measurement (0: epoch)")
    ap.add_argument("--flat", nargs=2, type=Path, metavar=("SMALL", "LARGE"),
                    help="the flat-memory check on two folders")
    ap.add_argument("--cache-dir", type=Path, help="(a temporary folder)")
    ap.add_argument("--worker", choices=("ours", "peer"), help=argparse.SUPPRESS)
    ap.add_argument("--epoch", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/var/tmp")) as tmp:
        cache_dir = args.cache_dir or Path(tmp)
        if args.flat:
            flat(*args.flat, cache_dir)
        else:
            throughput(args, cache_dir)


if __name__ == "__main__":
    main()
