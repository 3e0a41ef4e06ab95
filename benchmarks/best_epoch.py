"""What keeping the best epoch costs: a default ``deepnotes train`` with and without it.

The run is the main job as a user types it (``deepnotes train``: LeNet-5 on the digits, a
checkpoint after every epoch), in this process, with the default ``--monitor dev_loss``; a
second row arms early stopping on the dev F1 (``--monitor dev_f1 --early-stop 1000``, a patience
it never reaches, so both runs train every epoch). The peer is the same run with the tracking
switched off (the trainer's ``_track_best`` a no-op: no comparison, no copy of the weights to the
CPU, no best weights in the checkpoint). The kinds alternate ``--repeats`` times in ABBA order;
figures are medians of the wall time of the whole command; the ratio is ours / peer (issue 18's
goal: nothing measurable, under 1.05).

The worst case is a run whose best epoch is early: every later checkpoint then holds two sets of
weights. A third row times one checkpoint of ResNet-18 (11 M parameters) and Adam with the best
epoch's weights in it against one without (median of 15), the most that tracking adds to an
epoch.

    python benchmarks/best_epoch.py                # 5 runs of each kind, about 2 minutes
    python benchmarks/best_epoch.py --repeats 9 --epochs 20
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

from deepnotes.cli import main as deepnotes
from deepnotes.models import create_model
from deepnotes.optim import create_optimizer
from deepnotes.train import checkpoint
from deepnotes.train.state import TrainState
from deepnotes.train.trainer import Trainer

F1_ARGS = ["--monitor", "dev_f1", "--early-stop", "1000"]


def timed_run(epochs: int, tracking: bool, extra: list[str]) -> float:
    """Seconds of ``deepnotes train --epochs EPOCHS --quiet EXTRA`` into a fresh folder."""
    with tempfile.TemporaryDirectory() as out, contextlib.ExitStack() as stack:
        if not tracking:
            stack.enter_context(mock.patch.object(Trainer, "_track_best", lambda self, row: None))
        stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        start = time.perf_counter()
        rc = deepnotes(["train", "--epochs", str(epochs), "--out", out, "--quiet", *extra])
        seconds = time.perf_counter() - start
        kept = (Path(out) / "lenet5-digits" / "metrics.json").read_text()
    if rc != 0:
        raise RuntimeError(f"deepnotes train exited with {rc}")
    if tracking != ('"best"' in kept):
        raise RuntimeError("the tracking was not switched as the benchmark meant")
    return seconds


def checkpoint_ms(with_best: bool, repeats: int = 15) -> float:
    """Median milliseconds of one checkpoint of ResNet-18 with Adam's state, with or without a
    second set of weights (the best epoch's)."""
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=10, in_channels=3)
    optimizer = create_optimizer("adam", model.parameters(), 1e-3)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    best = {k: v.detach().clone() for k, v in model.state_dict().items()} if with_best else None
    state = TrainState(epoch=3, global_step=30, history=[{"epoch": 1, "train_loss": 1.0}])
    times = []
    with tempfile.TemporaryDirectory() as out:
        for _ in range(repeats):
            start = time.perf_counter()
            checkpoint.save(Path(out), model, optimizer, state, best)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def paired(epochs: int, repeats: int, extra: list[str]) -> tuple[list[float], list[float]]:
    """(with tracking, without) seconds, ``repeats`` each in ABBA order."""
    ours, peer = [], []
    for i in range(repeats):
        for tracking in ((True, False) if i % 2 == 0 else (False, True)):
            gc.collect()
            (ours if tracking else peer).append(timed_run(epochs, tracking, extra))
    return ours, peer


def measure(epochs: int, repeats: int) -> dict:
    timed_run(1, True, [])  # warm-up: imports, the digits, the first kernels
    loss, loss_peer = paired(epochs, repeats, [])
    f1, f1_peer = paired(epochs, repeats, F1_ARGS)
    return {"loss": loss, "loss_peer": loss_peer, "f1": f1, "f1_peer": f1_peer,
            "checkpoint_ms": checkpoint_ms(True), "checkpoint_ms_peer": checkpoint_ms(False)}


def rows(quick: bool = False, device: str = "cpu") -> list[dict]:
    """The suite's rows (CPU; ``device`` is not used). Quick mode: 8 epochs, 3 repeats."""
    epochs, repeats = (8, 3) if quick else (20, 5)
    r = measure(epochs, repeats)
    task = f"deepnotes train (digits, LeNet-5, {epochs} epochs), seconds keeping the best epoch"
    peer = "the same with best-epoch tracking off"
    med = statistics.median
    return [{"task": f"{task} (--monitor dev_loss, the default)", "peer": peer, "unit": "s",
             "ours": med(r["loss"]), "peer_figure": med(r["loss_peer"]), "goal": "< 1.05"},
            {"task": f"{task} (--monitor dev_f1 --early-stop armed)", "peer": peer, "unit": "s",
             "ours": med(r["f1"]), "peer_figure": med(r["f1_peer"]), "goal": "< 1.05"},
            {"task": "one checkpoint of ResNet-18 and Adam holding the best epoch's weights "
                     "too, ms (the worst case an epoch)", "peer": "the same without them",
             "unit": "ms", "ours": r["checkpoint_ms"], "peer_figure": r["checkpoint_ms_peer"],
             "goal": None}]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=20, help="epochs of each run (20)")
    ap.add_argument("--repeats", type=int, default=5, help="runs of each kind, alternating (5)")
    args = ap.parse_args()
    r = measure(args.epochs, args.repeats)
    print(f"deepnotes train, {args.epochs} epochs, {args.repeats} runs of each kind")
    for key, label in (("loss", "--monitor dev_loss"), ("f1", " ".join(F1_ARGS))):
        ours, peer = r[key], r[f"{key}_peer"]
        print(f"{label}: {statistics.median(ours):.2f} s ({', '.join(f'{s:.2f}' for s in ours)});"
              f" tracking off: {statistics.median(peer):.2f} s "
              f"({', '.join(f'{s:.2f}' for s in peer)}); ratio "
              f"{statistics.median(ours) / statistics.median(peer):.3f}")
    print(f"one ResNet-18 checkpoint: {r['checkpoint_ms']:.0f} ms with the best weights in it, "
          f"{r['checkpoint_ms_peer']:.0f} ms without")


if __name__ == "__main__":
    main()
