"""What CUDA graph replay (deepnotes.graphs) buys on a GPU, each figure against the same code with
graphs off, in the same process, alternating:

- the notes' full GRU and the slide's LSTM (the cell path), forward + backward, input 128,
  hidden 256, sequence 50, batch 64 (benchmarks/rnn_layers.py's shape), and torch.nn.GRU (cuDNN)
  for scale;
- word2vec's mini-batch path, skip-gram and CBOW, raw words/s over the first words of the GCIDE
  text (one epoch).

    python -m benchmarks.cuda_graphs                 # needs a CUDA GPU
    python -m benchmarks.cuda_graphs --device cpu --repeats 1 --words 100000  # a dry run

On a machine without a GPU it says so and exits with 0, unless ``--device cpu`` asks for the
dry run (graphs do nothing there: both columns time the same code).
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch

from deepnotes import graphs
from deepnotes.embeddings.word2vec import Word2Vec
from deepnotes.nn import GRU, LSTM


def timed(flag: bool, measure, *args, **kwargs):
    """measure(*args, **kwargs) with graphs on (flag True) or off."""
    graphs.ENABLED = flag
    try:
        return measure(*args, **kwargs)
    finally:
        graphs.ENABLED = True


def recurrent(repeats: int, device: str) -> None:
    from benchmarks.rnn_layers import step_ms  # python -m benchmarks.cuda_graphs: a package

    x = torch.randn(64, 50, 128, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    layers = {"GRU, the notes' full (cell path)": GRU(128, 256),
              "LSTM, the slide's a = Gamma_o * c (cell path)": LSTM(128, 256, output_tanh=False)}
    cudnn = torch.nn.GRU(128, 256, batch_first=True).to(device)
    peer = sorted(step_ms(cudnn, x, None, 10, sync) for _ in range(repeats))[repeats // 2]
    print(f"torch.nn.GRU (cuDNN on a GPU): {peer:.2f} ms")
    for name, layer in layers.items():
        layer.to(device)
        for flag in (True, False):  # warm-up: the captures
            timed(flag, step_ms, layer, x, None, 3, sync)
        on, off = [], []
        for _ in range(repeats):
            on.append(timed(True, step_ms, layer, x, None, 10, sync))
            off.append(timed(False, step_ms, layer, x, None, 10, sync))
        on_ms, off_ms = sorted(on)[repeats // 2], sorted(off)[repeats // 2]
        print(f"{name}: graphs {on_ms:.2f} ms, without {off_ms:.2f} ms, "
              f"speed-up {off_ms / on_ms:.2f}x; vs cuDNN's GRU {on_ms / peer:.2f}x")


def word2vec(words: int, device: str) -> None:
    from benchmarks.word2vec import default_corpus, text8_style

    with tempfile.TemporaryDirectory() as tmp:
        full, path = os.path.join(tmp, "full.txt"), os.path.join(tmp, "corpus.txt")
        text8_style(default_corpus(), full)
        with open(full) as f, open(path, "w") as out:
            out.write(" ".join(f.read().split()[:words]))
        for sg, name in ((1, "skip-gram"), (0, "CBOW")):
            rates = {}
            for flag in (True, False, True, False):
                m = timed(flag, Word2Vec, corpus_file=path, sg=sg, vector_size=100, window=5,
                          min_count=5, epochs=1, seed=1, device=device,
                          implementation="minibatch")
                rates.setdefault(flag, []).append(m.corpus.raw_words / m.train_seconds)
            on, off = max(rates[True]), max(rates[False])
            print(f"word2vec {name}, {words:,} words: graphs {on:,.0f} words/s, without "
                  f"{off:,.0f}, speed-up {on / off:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--words", type=int, default=2_000_000)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("cuda_graphs: no CUDA GPU here; nothing to measure")
        return
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "CPU (dry run)"
    print(f"{name}, torch {torch.__version__}")
    recurrent(args.repeats, args.device)
    word2vec(args.words, args.device)


if __name__ == "__main__":
    main()
