"""What crash-consistent checkpoints cost: a default ``deepnotes train`` with and without them.

The run is the main job as a user types it (``deepnotes train``: LeNet-5 on the digits, 20
epochs, a checkpoint after every epoch), in this process. The peer is the same run with the
durability switched off: no fsync of any file or folder (the extra cost of the commit protocol is
mostly those flushes; the lock, the checkpoint id and the finite-weights check are timed in both).
The two alternate ``--repeats`` times (in ABBA order); figures are medians of the wall time of the
whole command, and the ratio is ours / peer (the issue's goal: under 1.05). As the whole run is
noisy at the scale of a few per cent, a second row times one checkpoint of LeNet-5 and Adam (the
commit, then the files derived from it), durable or not, as the median of 30.

    python benchmarks/checkpoint_cost.py           # 6 runs of each, about a minute on 2 cores
    python benchmarks/checkpoint_cost.py --repeats 9 --epochs 20
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import os
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

from deepnotes import atomic
from deepnotes.cli import main as deepnotes
from deepnotes.models import create_model
from deepnotes.optim import create_optimizer
from deepnotes.train import checkpoint
from deepnotes.train.state import TrainState


def timed_run(epochs: int, durable: bool) -> float:
    """Seconds of ``deepnotes train --epochs EPOCHS --quiet`` into a fresh folder."""
    with tempfile.TemporaryDirectory() as out, contextlib.ExitStack() as stack:
        if not durable:
            stack.enter_context(no_fsync())
        stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        start = time.perf_counter()
        rc = deepnotes(["train", "--epochs", str(epochs), "--out", out, "--quiet"])
        seconds = time.perf_counter() - start
    if rc != 0:
        raise RuntimeError(f"deepnotes train exited with {rc}")
    return seconds


def no_fsync() -> contextlib.ExitStack:
    """A context in which nothing is flushed to disk (the peer)."""
    stack = contextlib.ExitStack()
    stack.enter_context(mock.patch.object(os, "fsync", lambda fd: None))
    stack.enter_context(mock.patch.object(atomic, "sync_folder", lambda folder: None))
    return stack


def checkpoint_ms(durable: bool, repeats: int = 30) -> float:
    """Median milliseconds of one checkpoint of LeNet-5 with Adam's state."""
    torch.manual_seed(0)
    model = create_model("lenet5", num_classes=10, in_channels=1)
    optimizer = create_optimizer("adam", model.parameters(), 1e-3)
    model(torch.randn(8, 1, 32, 32)).sum().backward()
    optimizer.step()
    state = TrainState(epoch=1, global_step=22, history=[{"epoch": 1, "train_loss": 1.0}])
    times = []
    with tempfile.TemporaryDirectory() as out, (contextlib.nullcontext() if durable
                                                 else no_fsync()):
        for _ in range(repeats):
            start = time.perf_counter()
            checkpoint.save(Path(out), model, optimizer, state)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def measure(epochs: int, repeats: int) -> dict:
    timed_run(1, True)  # warm-up: imports, the digits, the first kernels
    ours, peer = [], []
    for i in range(repeats):  # ABBA order: neither kind always runs first
        for durable in ((True, False) if i % 2 == 0 else (False, True)):
            gc.collect()
            (ours if durable else peer).append(timed_run(epochs, durable))
    return {"ours": statistics.median(ours), "peer": statistics.median(peer),
            "all_ours": ours, "all_peer": peer, "checkpoint_ms": checkpoint_ms(True),
            "checkpoint_ms_peer": checkpoint_ms(False)}


def rows(quick: bool = False, device: str = "cpu") -> list[dict]:
    """The suite's rows (CPU; ``device`` is not used). Quick mode: 10 epochs, 6 repeats (an even
    count, so each kind runs first as often as the other; 3 left the ratio at the disk's mercy)."""
    epochs, repeats = (10, 6) if quick else (20, 6)
    r = measure(epochs, repeats)
    return [{"task": f"deepnotes train (digits, LeNet-5, {epochs} epochs), seconds with "
                     "crash-consistent checkpoints", "peer": "the same without any fsync",
             "unit": "s", "ours": r["ours"], "peer_figure": r["peer"], "compare": "ours/peer",
             "goal": "< 1.05"},
            {"task": "one checkpoint of LeNet-5 and Adam, ms (commit, then the derived files)",
             "peer": "the same without any fsync", "unit": "ms", "ours": r["checkpoint_ms"],
             "peer_figure": r["checkpoint_ms_peer"], "compare": "ours/peer", "goal": None}]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=20, help="epochs of each run (20, the default)")
    ap.add_argument("--repeats", type=int, default=6,
                    help="runs of each kind, alternating in ABBA order (6)")
    args = ap.parse_args()
    r = measure(args.epochs, args.repeats)
    print(f"deepnotes train, {args.epochs} epochs, {args.repeats} runs each")
    print(f"with checkpoints made durable: {r['ours']:.2f} s  "
          f"({', '.join(f'{s:.2f}' for s in r['all_ours'])})")
    print(f"without any fsync:             {r['peer']:.2f} s  "
          f"({', '.join(f'{s:.2f}' for s in r['all_peer'])})")
    print(f"ratio: {r['ours'] / r['peer']:.3f}")
    print(f"one checkpoint: {r['checkpoint_ms']:.1f} ms durable, {r['checkpoint_ms_peer']:.1f} ms "
          f"without fsync; {args.epochs} of them: "
          f"{args.epochs * r['checkpoint_ms'] / 1000 / r['ours']:.1%} of the durable run")


if __name__ == "__main__":
    main()
