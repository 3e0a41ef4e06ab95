"""Transfer learning on Fashion-MNIST: fine-tuning from task A against training from scratch on B.

A = Fashion-MNIST classes 0-4 (T-shirt/top, Trouser, Pullover, Dress, Coat), all their images
(30,000 training and 5,000 test). B = classes 5-9 (Sandal, Shirt, Sneaker, Bag, Ankle boot) with
20 images a class for training (5 a class for dev, 1,000 a class for test). A and B share the
input x (28x28 grey clothes), A has 300 times B's data, and A's low-level features (edges,
textures, outlines) should help B: the notes' three conditions.

One process, one after the other, same budget on B for every row (same epochs, batch size,
optimizer, learning rate, schedule and seed): LeNet-5 trained on B from scratch, and LeNet-5
pre-trained on A and fine-tuned on B with several --freeze choices. Figures are medians (and
min-max) over seeds; each seed draws another 20-a-class training set and another new head.

The feature cache: head-only training (every layer group frozen) on cached features against
running the frozen layers every step, on B (100 images) and on B-all (classes 5-9 with all 30,000
training images), wall-clock of the whole fit (features, epochs, checkpoints) without the final
evaluation, which is the same for both.

    python benchmarks/transfer.py                 # ~17 minutes on 2 shared CPU cores
    python benchmarks/transfer.py --seeds 3 --lrs 0.003
"""

from __future__ import annotations

import argparse
import logging
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from deepnotes.data.idx import FASHION_CLASSES, read_idx
from deepnotes.runs.config import RunConfig
from deepnotes.runs.finetune import fit_finetune, prepare_finetune
from deepnotes.runs.session import fit, prepare

SOURCE = Path("/usr/share/datasets/fashion-mnist")
START = time.perf_counter()
NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte")
ROWS = [("scratch on B", None, False),
        ("transfer, --freeze auto (head only, cached)", "auto", False),
        ("transfer, --freeze 2 (train fc.1, fc.3, head)", "2", False),
        ("transfer, --freeze none (all layers)", "none", False),
        ("transfer, --freeze none --gradual", "none", True)]


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big")
                                                      for d in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_subset(folder: Path, parts: list, classes: range) -> None:
    """IDX files holding only the examples of ``classes`` (labels kept as they are)."""
    folder.mkdir(parents=True)
    for (images, labels), (image_name, label_name) in zip(parts, (NAMES[:2], NAMES[2:])):
        keep = np.isin(labels, list(classes))
        write_idx(folder / image_name, images[keep])
        write_idx(folder / label_name, labels[keep])


def write_b_folder(folder: Path, parts: list, per_class: int, test: int, seed: int) -> None:
    """B as a folder of PNGs, one sub-folder a class: train + dev images drawn from the training
    set, the test set's images of the class."""
    rng = np.random.default_rng(seed)
    (train_x, train_y), (test_x, test_y) = parts
    for c in range(5, 10):
        sub = folder / f"{c}-{FASHION_CLASSES[c].replace('/', '-')}"
        sub.mkdir(parents=True)
        own = rng.choice(np.flatnonzero(train_y == c), per_class, replace=False)
        images = np.concatenate([train_x[own], test_x[test_y == c][:test]])
        for i, image in enumerate(images):
            Image.fromarray(image).save(sub / f"{i:04d}.png")


def config(**options) -> RunConfig:
    return RunConfig(**{"model": "lenet5", "device": "cpu", **options})


def run_b(work: Path, source: Path, row: tuple, seed: int, lr: float, args) -> float:
    name, freeze, gradual = row
    per = args.per_class + args.dev
    b = config(data=str(work / "b"), epochs=args.epochs_b, batch_size=args.batch_b, seed=seed,
               lr=lr, fractions=[args.per_class / (per + 1000), args.dev / (per + 1000),
                                 1000 / (per + 1000)])
    run_dir = work / "runs" / f"b-{freeze}-{gradual}-{seed}-{lr}"
    run_dir.mkdir(parents=True)
    if freeze is None:
        session = prepare(b, progress=False)
        _, result = fit(session, run_dir, progress=False)
    else:
        session, _ = prepare_finetune(source, b, freeze_option=freeze, gradual=gradual,
                                      progress=False)
        _, result = fit_finetune(session, run_dir, cache_dir=work / "cache", progress=False)
    assert session.splits.sizes()["train"] == 5 * args.per_class
    return result["test"]["accuracy"]


def time_head(work: Path, source: Path, spec: dict, mode: str, cache_dir: Path) -> float:
    """Seconds of head-only fine-tuning: the whole fit but its final evaluation (timed apart)."""
    from deepnotes.runs import report as run_report

    session, _ = prepare_finetune(source, config(**spec), freeze_option="all-but-head",
                                  progress=False)
    run_dir = work / "runs" / f"time-{mode}-{len(list((work / 'runs').iterdir()))}"
    run_dir.mkdir(parents=True)
    evaluation, metrics = [], run_report.split_metrics

    def timed(*a, **k):
        start = time.perf_counter()
        out = metrics(*a, **k)
        evaluation.append(time.perf_counter() - start)
        return out

    run_report.split_metrics = timed  # fit and fit_head_on_cache look it up when they finish
    try:
        start = time.perf_counter()
        fit_finetune(session, run_dir, cache=mode != "no cache", cache_dir=cache_dir,
                     progress=False)
        return time.perf_counter() - start - sum(evaluation)
    finally:
        run_report.split_metrics = metrics


def spread(values: list[float]) -> str:
    return (f"{statistics.median(values):.4f} ({min(values):.4f}-{max(values):.4f})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs-a", type=int, default=3)
    p.add_argument("--epochs-b", type=int, default=30)
    p.add_argument("--batch-b", type=int, default=20)
    p.add_argument("--per-class", type=int, default=20)
    p.add_argument("--dev", type=int, default=5)
    p.add_argument("--epochs-cache", type=int, default=3)
    p.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 1e-2])
    args = p.parse_args()
    logging.getLogger("deepnotes").setLevel(logging.ERROR)  # A and B-all leave 5 classes empty
    parts = [(read_idx(SOURCE / f"{NAMES[i]}.gz").numpy(), read_idx(SOURCE / f"{NAMES[i + 1]}.gz")
              .numpy()) for i in (0, 2)]
    work = Path(tempfile.mkdtemp(prefix="deepnotes-transfer-"))
    try:
        write_subset(work / "a", parts, range(0, 5))
        write_subset(work / "b-all", parts, range(5, 10))
        write_b_folder(work / "b", parts, args.per_class + args.dev, 1000, seed=0)
        source = work / "runs" / "a"
        source.mkdir(parents=True)
        start = time.perf_counter()
        session = prepare(config(data="fashion-mnist", data_dir=str(work / "a"),
                                 epochs=args.epochs_a), progress=False)
        _, result_a = fit(session, source, progress=False)
        seconds_a = time.perf_counter() - start
        accuracy = {(row, lr): [run_b(work, source, row, seed, lr, args)
                                for seed in range(args.seeds)]
                    for row in ROWS for lr in args.lrs}
        b20 = {"data": str(work / "b"), "epochs": args.epochs_cache, "batch_size": args.batch_b,
               "fractions": [args.per_class / (args.per_class + args.dev + 1000),
                             args.dev / (args.per_class + args.dev + 1000),
                             1000 / (args.per_class + args.dev + 1000)]}
        ball = {"data": "fashion-mnist", "data_dir": str(work / "b-all"),
                "epochs": args.epochs_cache}
        timing = {}
        for label, spec in (("B (100 training images)", b20), ("B-all (27,000)", ball)):
            cold = work / f"cache-{len(timing)}"
            timing[label] = {mode: time_head(work, source, spec, mode, cold)
                             for mode in ("no cache", "cache, cold", "cache, warm")}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(args, result_a, seconds_a, accuracy, timing)


def report(args, result_a, seconds_a, accuracy, timing) -> None:
    print(f"# transfer learning, Fashion-MNIST; torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print(f"A: classes 0-4, LeNet-5, {args.epochs_a} epochs: test accuracy "
          f"{result_a['test']['accuracy']:.4f} ({seconds_a:.0f} s)")
    print(f"B: classes 5-9, {args.per_class} training images a class, test 1000 a class; "
          f"{args.epochs_b} epochs, batch {args.batch_b}, adam, one-cycle; "
          f"{args.seeds} seeds\n")
    lrs = args.lrs
    print(f"test accuracy on B, median (min-max) over {args.seeds} seeds, by peak learning rate")
    print(f"| {'LeNet-5 on B':<46} | " + " | ".join(f"{f'lr {lr:g}':<24}" for lr in lrs) + " |")
    print(f"| {'-' * 46} | " + " | ".join("-" * 24 for _ in lrs) + " |")
    for row in ROWS:
        print(f"| {row[0]:<46} | " + " | ".join(f"{spread(accuracy[row, lr]):<24}" for lr in lrs)
              + " |")
    scratch = max(statistics.median(accuracy[ROWS[0], lr]) for lr in lrs)
    best = max(((row, lr) for row in ROWS[1:] for lr in lrs),
               key=lambda k: statistics.median(accuracy[k]))
    print(f"\nbest transfer ({best[0][0]}, lr {best[1]:g}) - best scratch: "
          f"{statistics.median(accuracy[best]) - scratch:+.4f}\n")
    print(f"head-only training, {args.epochs_cache} epochs, seconds without the final evaluation")
    print(f"| {'data':<24} | {'no cache':>9} | {'cache, cold':>11} | {'cache, warm':>11} | "
          f"{'speed-up cold/warm':>18} |")
    print(f"| {'-' * 24} | {'-' * 9} | {'-' * 11} | {'-' * 11} | {'-' * 18} |")
    for label, t in timing.items():
        ratio = f"{t['no cache'] / t['cache, cold']:.1f}x / {t['no cache'] / t['cache, warm']:.1f}x"
        print(f"| {label:<24} | {t['no cache']:>9.2f} | {t['cache, cold']:>11.2f} | "
              f"{t['cache, warm']:>11.2f} | {ratio:>18} |")
    print("\ncommand: python benchmarks/transfer.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in vars(args).items()))
    print(f"wall time {time.perf_counter() - START:.0f} s")


if __name__ == "__main__":
    main()
