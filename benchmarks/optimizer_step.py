"""Optimizer step time over a ResNet-50-sized parameter set: deepnotes vs the fastest torch.optim.

The parameters are those of ResNet-50 (25.6 M numbers in 161 tensors) with random gradients.
Each of the course's rules runs against the fastest torch.optim implementation of that rule:
``fused=True`` where torch has it (Adam; SGD, with and without momentum), else the faster of
foreach and the for-loop (RMSprop). The variants torch lacks (Adam with eps inside the square root
or without bias correction; momentum's average form) run against torch's fused Adam / SGD-momentum,
the nearest thing a user could pick. All optimizers share one set of parameters and gradients and
alternate ``--repeats`` times in this process; figures are medians of the per-step time, and the
ratio is deepnotes / peer (below 1: deepnotes is faster).

    python benchmarks/optimizer_step.py                    # CPU, about 2 minutes on 2 cores
    python benchmarks/optimizer_step.py --device cuda --steps 50
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from deepnotes.models import create_model
from deepnotes.optim import Adam, GradientDescent, Momentum, RMSprop


def peers(params) -> dict:
    """torch.optim's implementations of each rule; the fastest is the peer (for RMSprop, torch
    has no fused kernel, so foreach and the for-loop are both timed)."""
    return {
        "sgd (fused)": torch.optim.SGD(params, lr=1e-3, fused=True),
        "momentum (fused)": torch.optim.SGD(params, lr=1e-3, momentum=0.9, fused=True),
        "rmsprop (foreach)": torch.optim.RMSprop(params, lr=1e-4, alpha=0.9, foreach=True),
        "rmsprop (for-loop)": torch.optim.RMSprop(params, lr=1e-4, alpha=0.9, foreach=False),
        "adam (fused)": torch.optim.Adam(params, lr=1e-4, fused=True),
        "adam (foreach)": torch.optim.Adam(params, lr=1e-4, foreach=True),
    }


RULES = {  # name -> (deepnotes optimizer, the peer rule it is measured against)
    "sgd": (lambda ps: GradientDescent(ps, lr=1e-3), "sgd"),
    "momentum (notes: v = beta v + (1 - beta) dW)": (lambda ps: Momentum(ps, lr=1e-3), "momentum"),
    "rmsprop": (lambda ps: RMSprop(ps, lr=1e-4), "rmsprop"),
    "adam": (lambda ps: Adam(ps, lr=1e-4), "adam"),
    "adam, eps inside sqrt (notes)": (lambda ps: Adam(ps, lr=1e-4, eps_inside_sqrt=True), "adam"),
    "adam, no bias correction": (lambda ps: Adam(ps, lr=1e-4, bias_correction=False), "adam"),
}


def step_ms(opt, steps: int, sync) -> float:
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        opt.step()
    sync()
    return (time.perf_counter() - start) / steps * 1e3


def resnet50_params(device: torch.device) -> list[torch.Tensor]:
    """ResNet-50's parameters on ``device``, each with a random gradient (seed 0)."""
    params = list(create_model("resnet50", num_classes=1000).to(device).parameters())
    torch.manual_seed(0)
    for p in params:
        p.grad = torch.randn_like(p) * 1e-2
    return params


def measure(params, device: torch.device, steps: int, repeats: int, reference: bool) -> dict:
    """Median ms per step of every contender (torch's and ours), alternating ``repeats`` times."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    contenders = {f"torch {k}": o for k, o in peers(params).items()}
    for name, (make, _) in RULES.items():
        contenders[name] = make(params)
        if reference:
            for impl in ("foreach", "reference"):
                contenders[f"{name} [{impl}]"] = make(params)
                contenders[f"{name} [{impl}]"].implementation = impl
    for opt in contenders.values():  # state made, kernels warm
        for _ in range(2):
            opt.step()
    times = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, opt in contenders.items():
            times[name].append(step_ms(opt, steps, sync))
    return {name: statistics.median(t) for name, t in times.items()}


def peer_of(rule: str, median: dict) -> str:
    """The fastest torch contender of ``rule``."""
    return min((n for n in median if n.startswith(f"torch {rule} (")), key=median.get)


def rows(quick: bool = False, device: str = "cpu") -> list[dict]:
    """The suite's rows: each rule against the fastest torch.optim rule (3 steps x 3 repeats in
    quick mode). Goal: ratio <= 1.0 (RESULTS.md, issue 4)."""
    device = torch.device(device)
    median = measure(resnet50_params(device), device, 3 if quick else 10, 3 if quick else 7,
                     reference=False)
    return [{"task": f"optimizer step, ResNet-50 parameters, {name} ({device.type})",
             "peer": peer_of(rule, median), "unit": "ms",
             "ours": median[name], "peer_figure": median[peer_of(rule, median)],
             "compare": "ours/peer", "goal": "<= 1.0"} for name, (_, rule) in RULES.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=10, help="steps per timing (10)")
    ap.add_argument("--repeats", type=int, default=7, help="alternating timings per optimizer (7)")
    ap.add_argument("--reference", action="store_true",
                    help="also time deepnotes' foreach and single-tensor reference paths")
    args = ap.parse_args()
    device = torch.device(args.device)
    params = resnet50_params(device)
    print(f"{sum(p.numel() for p in params) / 1e6:.1f} M parameters in {len(params)} tensors on "
          f"{device}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    median = measure(params, device, args.steps, args.repeats, args.reference)

    print(f"\n{'rule':46s} {'deepnotes ms':>12s} {'peer ms':>8s} {'ratio':>6s}  peer")
    for name, (_, rule) in RULES.items():
        peer = peer_of(rule, median)
        print(f"{name:46s} {median[name]:12.2f} {median[peer]:8.2f} "
              f"{median[name] / median[peer]:6.2f}  {peer}")
        for impl in ("foreach", "reference"):
            if f"{name} [{impl}]" in median:
                print(f"  {'deepnotes ' + impl:44s} {median[f'{name} [{impl}]']:12.2f}")
    print("\nall torch timings: " + ", ".join(f"{n} {m:.2f} ms" for n, m in median.items()
                                             if n.startswith("torch")))


if __name__ == "__main__":
    main()
