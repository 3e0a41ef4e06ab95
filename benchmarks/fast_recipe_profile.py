"""Where ``--recipe fast``'s seconds go on a GPU, and what each candidate change does to an epoch.

Issue 20 asks for Fashion-MNIST to 0.94 in under 2.5 s (it takes 5.0-6.4 s on an H200: a first
epoch of 1.3-1.7 s, then 0.41-0.55 s an epoch). Before changing the recipe, this measures, in one
process on fresh copies of the recipe's run (same data, model and optimizer as ``deepnotes train
--recipe fast --data fashion-mnist``):

1. the first steps one by one, each waited for: what the first epoch's warm-up is made of;
2. one steady epoch under torch.profiler: wall seconds against the seconds the GPU spent in
   kernels (a GPU busy a small part of the time waits on Python: CUDA graphs would pay; a busy
   one needs fewer or faster kernels), and the kernels that take the most;
3. three epochs of each variant (the recipe; cudnn.benchmark; NCHW instead of NHWC; batch 1024;
   the network's forward and backward replayed from CUDA graphs; torch.compile), seconds an
   epoch. The variants' accuracy is not measured here: a variant
   worth having is then run to 0.94 with benchmarks/fast_recipe.py's options.

    python benchmarks/fast_recipe_profile.py                 # on a GPU, about a minute
    python benchmarks/fast_recipe_profile.py --device cpu --steps 2 --epochs 2 \
        --train-size 1024 --variants recipe NCHW            # a dry run, about a minute
"""

from __future__ import annotations

import argparse
import time

import torch

from deepnotes.errors import DeepnotesError
from deepnotes.runs.build import batches
from deepnotes.runs.config import RunConfig
from deepnotes.runs.session import prepare
from deepnotes.train import Trainer
from deepnotes.train.recipes import recipe_options

VARIANTS = {
    "recipe": {},
    "cudnn.benchmark": {"cudnn_benchmark": True},
    "NCHW": {"channels_last": False},
    "batch 1024": {"batch_size": 1024},
    "CUDA graphs": {"cuda_graphs": True},
    "torch.compile": {"compile": True},
}


def fresh_run(args, epochs: int, **changes):
    """(session, trainer, training batches) of a fresh run of the recipe (``changes``: RunConfig
    fields), its data on the device; with --train-size, its first images only."""
    device = args.device
    options = {**recipe_options("fast", torch.device(device)), "data": args.data,
               "device": device, "recipe": "fast", "data_dir": args.data_dir, **changes}
    session = prepare(RunConfig(**options), progress=False)
    if args.train_size is not None:
        session.splits.train = session.splits.train[:args.train_size]
    session.dataset.x = session.dataset.x.to(session.device)
    session.dataset.y = session.dataset.y.to(session.device)
    c = session.config
    trainer = Trainer(session.model, session.optimizer, epochs=epochs, schedule=c.schedule,
                      device=session.device, progress=False, precision=c.amp_precision,
                      channels_last=c.channels_last, compile=c.compile, task=c.task,
                      cuda_graphs=c.cuda_graphs)
    return session, trainer, batches(c, session.dataset, session.splits.train, session.device,
                                     train=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def first_steps(args) -> None:
    """Seconds of each of the first ``--steps`` steps of a fresh run, each waited for."""
    session, trainer, train = fresh_run(args, 1)
    seconds, start = [], time.perf_counter()
    for i, (x, y) in enumerate(train.epoch(0)):
        if i == args.steps:
            break
        trainer.train_step(x, y)
        sync(session.device)
        seconds.append(time.perf_counter() - start)
        start = time.perf_counter()
    shown = ", ".join(f"{s * 1e3:.1f}" for s in seconds)
    print(f"first {len(seconds)} steps (ms each, batch and augmentation included): {shown}")
    print(f"  of {len(train)} steps an epoch; the last one's time x steps = "
          f"{seconds[-1] * len(train):.2f} s an epoch", flush=True)


def device_seconds(events) -> float:
    """The kernels' own time in seconds, from the profiler's averages (its name changed in
    torch 2.4: self_device_time_total, before it self_cuda_time_total)."""
    total = sum(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0))
                for e in events)
    return total / 1e6


def profile_epoch(args) -> None:
    """One epoch after a warm-up epoch, under torch.profiler: wall vs kernel seconds."""
    session, trainer, train = fresh_run(args, 2)
    trainer._train_epoch(train, len(train))  # warm-up: cuDNN's first calls, the allocator
    trainer.state.epoch, trainer.state.step = 1, 0
    activities = [torch.profiler.ProfilerActivity.CPU]
    if session.device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    sync(session.device)
    with torch.profiler.profile(activities=activities) as prof:
        start = time.perf_counter()
        trainer._train_epoch(train, len(train))
        sync(session.device)
        wall = time.perf_counter() - start
    events = prof.key_averages()
    busy = device_seconds(events)
    print(f"one steady epoch under the profiler: {wall:.3f} s wall, {busy:.3f} s of GPU kernels "
          f"({100 * busy / wall:.0f} % busy), {len(train)} steps, "
          f"{1e3 * wall / len(train):.2f} ms a step")
    key = "self_device_time_total" if session.device.type == "cuda" else "self_cpu_time_total"
    try:
        print(events.table(sort_by=key, row_limit=args.top))
    except (AttributeError, KeyError):  # an older torch's column name
        print(events.table(sort_by="self_cuda_time_total", row_limit=args.top))


def variant_epochs(args, name: str) -> None:
    """Seconds of each of ``--epochs`` epochs of the variant, evaluation not timed."""
    changes = dict(VARIANTS[name])
    torch.backends.cudnn.benchmark = changes.pop("cudnn_benchmark", False)
    try:
        try:
            session, trainer, train = fresh_run(args, args.epochs, **changes)
        except DeepnotesError as exc:  # CUDA graphs on a CPU, say
            print(f"{name:16s} refused: {exc}", flush=True)
            return
        seconds = []
        for epoch in range(args.epochs):
            trainer.state.epoch, trainer.state.step = epoch, 0
            sync(session.device)
            start = time.perf_counter()
            trainer._train_epoch(train, len(train))
            sync(session.device)
            seconds.append(time.perf_counter() - start)
    finally:
        torch.backends.cudnn.benchmark = False
    shown = ", ".join(f"{s:.3f}" for s in seconds)
    print(f"{name:16s} batch {session.config.batch_size:5d}: epochs {shown} s; "
          f"steady {min(seconds[1:] or seconds):.3f} s an epoch", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--steps", type=int, default=12, help="first steps timed one by one")
    parser.add_argument("--epochs", type=int, default=3, help="epochs a variant (3)")
    parser.add_argument("--top", type=int, default=12, help="kernels listed (12)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--no-profile", action="store_true", help="skip the profiled epoch")
    parser.add_argument("--data-dir", help="the IDX files' folder (where deepnotes looks)")
    parser.add_argument("--train-size", type=int, help="train on the first N images only")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("fast_recipe_profile: no CUDA GPU here; nothing to measure")
        return
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "CPU (dry run)"
    print(f"{name}, torch {torch.__version__}, data {args.data}", flush=True)
    first_steps(args)
    if not args.no_profile:
        profile_epoch(args)
    for variant in args.variants:
        variant_epochs(args, variant)


if __name__ == "__main__":
    main()
