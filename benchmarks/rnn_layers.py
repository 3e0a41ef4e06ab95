"""Recurrent layers, forward + backward: deepnotes.nn RNN / GRU / LSTM vs torch.nn's.

One step is forward on a (batch, sequence, input) batch, the sum of the outputs, backward (weight
gradients set to None first). Sizes: input 128, hidden 256, sequence 50, batch 64, float32.
Each row runs a deepnotes layer against the torch.nn layer of the same shape (1 layer,
``num_layers=2``, ``bidirectional=True``): the fused rows (LSTM, GRU with reset_after=True) map our
parameters onto torch's kernel; the variant rows (GRU with the reset gate before the product, the
simplified GRU, the slide's LSTM a = Gamma_o * c) run the cell path (compiled time loop,
hand-written backward through time) against the nearest torch layer, which computes other
equations. ``--cell`` adds the cell path of the fused configurations. All layers alternate
``--repeats`` times in this process; figures are medians of the per-step time, and the ratio is
deepnotes / peer (below 1: deepnotes is faster). Run it alone: other jobs distort the timings.

    python benchmarks/rnn_layers.py                    # CPU, about 2 minutes on 2 cores
    python benchmarks/rnn_layers.py --cell --lengths   # + cell paths, variable-length batches
    python benchmarks/rnn_layers.py --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from deepnotes.nn import GRU, LSTM

# row -> (deepnotes class, options, torch peer, goal ratio or None)
ROWS = {
    "LSTM (fused)": (LSTM, {}, "LSTM", 1.05),
    "GRU reset_after=True (fused)": (GRU, {"reset_after": True}, "GRU", 1.05),
    "GRU notes' full (cell)": (GRU, {}, "GRU", 1.5),
    "LSTM notes' a = Gamma_o * c (cell)": (LSTM, {"output_tanh": False}, "LSTM", None),
    "GRU simplified (cell)": (GRU, {"full": False}, "GRU", None),
}
CELL_ROWS = {
    "LSTM [cell path]": (LSTM, {"implementation": "cell"}, "LSTM", None),
    "GRU reset_after=True [cell path]": (GRU, {"reset_after": True, "implementation": "cell"},
                                         "GRU", None),
}
SHAPES = {"1 layer": {}, "2 layers": {"num_layers": 2}, "bidirectional": {"bidirectional": True}}


def outputs(layer, x, lengths):
    if lengths is None:
        return layer(x)[0]
    if isinstance(layer, (GRU, LSTM)):
        return layer(x, lengths=lengths)[0]
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    return pad_packed_sequence(layer(packed)[0], batch_first=True)[0]  # what a torch user writes


def step_ms(layer, x, lengths, steps: int, sync) -> float:
    """Mean time of forward + backward over ``steps`` steps."""
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        layer.zero_grad(set_to_none=True)
        outputs(layer, x, lengths).sum().backward()
    sync()
    return (time.perf_counter() - start) / steps * 1e3


def measure(rows: dict, shapes: dict, x, lengths, hidden: int, steps: int, repeats: int):
    """(row name, peer name, goal, deepnotes ms, peer ms) for every row and shape: medians of
    ``repeats`` alternating timings of ``steps`` steps each."""
    device = x.device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    contenders, pairs = {}, []
    for shape, kw in shapes.items():
        for peer in ("LSTM", "GRU"):
            contenders[f"torch.nn.{peer}, {shape}"] = getattr(nn, peer)(
                x.shape[2], hidden, batch_first=True, **kw).to(device)
        for row, (cls, options, peer, goal) in rows.items():
            name = f"{row}, {shape}"
            contenders[name] = cls(x.shape[2], hidden, **kw, **options).to(device)
            pairs.append((name, f"torch.nn.{peer}, {shape}", goal))
    for layer in contenders.values():  # kernels warm, loops compiled
        step_ms(layer, x, lengths, 2, sync)
    times = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, layer in contenders.items():
            times[name].append(step_ms(layer, x, lengths, steps, sync))
    median = {name: statistics.median(t) for name, t in times.items()}
    return [(name, peer, goal, median[name], median[peer]) for name, peer, goal in pairs]


def rows(quick: bool = False, device: str = "cpu") -> list[dict]:
    """The suite's rows at the default sizes; quick mode times only the rows with a goal
    (RESULTS.md, issue 5: <= 1.05 fused, <= 1.5 the notes' GRU), 1 layer and bidirectional,
    3 repeats."""
    torch.manual_seed(0)
    x = torch.randn(64, 50, 128, device=device)
    chosen = {k: v for k, v in ROWS.items() if v[3] is not None or not quick}
    shapes = {k: v for k, v in SHAPES.items() if k != "2 layers" or not quick}
    results = measure(chosen, shapes, x, None, 256, 3, 3 if quick else 7)
    return [{"task": f"forward + backward, {name} ({x.device.type})", "peer": peer, "unit": "ms",
             "ours": ours, "peer_figure": peer_ms, "compare": "ours/peer",
             "goal": None if goal is None else f"<= {goal}"}
            for name, peer, goal, ours, peer_ms in results]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq", type=int, default=50)
    ap.add_argument("--input", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3, help="steps per timing (3)")
    ap.add_argument("--repeats", type=int, default=7, help="alternating timings per layer (7)")
    ap.add_argument("--cell", action="store_true", help="also time the fused configs' cell path")
    ap.add_argument("--lengths", action="store_true",
                    help="variable-length batches (lengths from seq/2 to seq; torch packs)")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.seq, args.input, device=device)
    lengths = (torch.randint(args.seq // 2, args.seq + 1, (args.batch,)) if args.lengths
               else None)
    print(f"forward + backward, batch {args.batch}, sequence {args.seq}, input {args.input}, "
          f"hidden {args.hidden}, {'variable' if args.lengths else 'full'} lengths, on "
          f"{device}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    chosen = {**ROWS, **(CELL_ROWS if args.cell else {})}
    results = measure(chosen, SHAPES, x, lengths, args.hidden, args.steps, args.repeats)

    print(f"\n{'deepnotes layer':50s} {'deepnotes ms':>12s} {'peer ms':>8s} {'ratio':>6s} "
          f"{'goal':>5s}  peer")
    for name, peer, goal, ours, peer_ms in results:
        print(f"{name:50s} {ours:12.1f} {peer_ms:8.1f} "
              f"{ours / peer_ms:6.2f} {'' if goal is None else goal:>5}  {peer}")


if __name__ == "__main__":
    main()
