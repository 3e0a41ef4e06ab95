"""Training images/s of every image model, deepnotes vs the same architecture in a plain loop.

Fashion-MNIST-sized input (1 x 28 x 28, resized to each model's input size), batch 64, Adam.
The peer is the loop a typical user writes: a DataLoader over a TensorDataset of float tensors.
deepnotes: uint8 tensors batched by indexing (data.Batches) and Trainer.train_step. Both train
a copy of the same model (same initial weights) for the same number of steps, in this one
process, alternating deepnotes and peer ``--repeats`` times; the figures are medians and the
ratio is deepnotes / peer.

    python benchmarks/cnn_throughput.py                 # every image model, ~10 min on 2 cores
    python benchmarks/cnn_throughput.py --models resnet18 vgg11 --steps 20
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from deepnotes.data import Batches, Normalizer, resize_images
from deepnotes.models import create_model, list_models, model_class
from deepnotes.optim import create_optimizer
from deepnotes.train import Trainer


def fake_fashion(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random 28x28 grey images at the model's input size: speed does not depend on pixels."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g)
    return resize_images(x, size), torch.randint(0, 10, (n,), generator=g)


def peer_images_per_s(model, x, y, normalizer, batch, steps, warmup) -> float:
    data = torch.utils.data.TensorDataset(normalizer(x), y)
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True, drop_last=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    start = None
    for i, (xb, yb) in enumerate(loader):
        if i == warmup:
            start = time.perf_counter()
        if i == warmup + steps:
            break
        optimizer.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        optimizer.step()
    return steps * batch / (time.perf_counter() - start)


def deepnotes_images_per_s(model, x, y, normalizer, batch, steps, warmup) -> float:
    trainer = Trainer(model, create_optimizer("adam", model.parameters(), 1e-3), epochs=1,
                      progress=False)
    batches = Batches(x, y, torch.arange(len(y)), batch, normalizer, shuffle=True, drop_last=True)
    start = None
    for i, (xb, yb) in enumerate(batches.epoch(0)):
        if i == warmup:
            start = time.perf_counter()
        if i == warmup + steps:
            break
        trainer.train_step(xb, yb)
    return steps * batch / (time.perf_counter() - start)


def image_models() -> list[str]:
    return [m for m in list_models() if model_class(m).input_kind == "image"]


def measure(names, batch: int, steps: int, warmup: int, repeats: int):
    """Yield (model, input size, deepnotes images/s, peer images/s) per model, the medians of
    ``repeats`` alternating timings."""
    n = batch * (steps + warmup + 1)
    for name in names:
        size = model_class(name).input_size
        x, y = fake_fashion(n, size)
        normalizer = Normalizer.fit(x)
        torch.manual_seed(0)
        model = create_model(name, num_classes=10, in_channels=1)
        twin = copy.deepcopy(model)
        runs = {"ours": [], "peer": []}
        for _ in range(repeats):
            runs["ours"].append(deepnotes_images_per_s(model, x, y, normalizer, batch, steps,
                                                       warmup))
            runs["peer"].append(peer_images_per_s(twin, x, y, normalizer, batch, steps, warmup))
        ours, peer = (statistics.median(v) for v in runs.values())
        yield name, size, ours, peer


def rows(quick: bool = False, device: str = "cpu") -> list[dict]:
    """The suite's rows (CPU only; ``device`` is not used): every image model with 8 timed steps
    (RESULTS.md's table, about half an hour on 2 cores), or lenet5 and resnet18 with 5 in quick
    mode. Goal: ratio >= 1.0 (RESULTS.md, issue 3)."""
    names = ["lenet5", "resnet18"] if quick else image_models()
    steps = 5 if quick else 8
    return [{"task": f"training images/s, {name} 1x{size}x{size}, batch 64",
             "peer": "plain loop (DataLoader, torch.optim.Adam)", "unit": "img/s",
             "ours": ours, "peer_figure": peer, "compare": "ours/peer", "goal": ">= 1.0"}
            for name, size, ours, peer in measure(names, 64, steps, 3, 3)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=image_models())
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"{args.steps} timed steps")
    print(f"{'model':<12} {'input':>9} {'deepnotes img/s':>16} {'plain loop img/s':>17} "
          f"{'ratio':>6}")
    for name, size, ours, peer in measure(args.models, args.batch_size, args.steps, args.warmup,
                                          args.repeats):
        print(f"{name:<12} {f'1x{size}x{size}':>9} {ours:>16.0f} {peer:>17.0f} "
              f"{ours / peer:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
