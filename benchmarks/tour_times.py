"""How long the README tour's slow commands take here: the "2 CPU cores" and "one GPU" columns of
its table of slow commands.

Each command is taken from README.md as written (found by the text in SLOW) and run in a fresh
folder after ``deepnotes sample all --out .`` and the quick start's ``deepnotes train``, in its
own process, on the device ``--device auto`` picks; the wall time (start-up included) is printed
as a table row as soon as it ends.

    python benchmarks/tour_times.py                      # all of them
    python benchmarks/tour_times.py --only tune dates    # some

It needs Fashion-MNIST's files (Debian's dataset-fashion-mnist) for the rows that use it.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
SLOW = {  # name: (the table's row, text that picks the README's command); the rows whose GPU
    # figure RESULTS.md lacks come first, so a run stopped at its time limit still gives them
    "tune": ("`deepnotes tune`, 20 trials of 5 epochs (7)", "deepnotes tune --optimizer adam"),
    "dates": ("dates encoder-decoder, 6 epochs (8)", "--data dates --epochs 6"),
    "lstm": ("LSTM over Fashion-MNIST's rows, 10 epochs (8)", "--model lstm --epochs 10"),
    "charlm": ("character language model on `my_book.txt`, 10 epochs (8)",
               "--model charlm --epochs 10"),
    "learning-curve": ("`deepnotes learning-curve` on the digits (11)",
                       "deepnotes learning-curve --data digits"),
    "lenet5-fashion": ("LeNet-5 on Fashion-MNIST, 6 epochs (2)",
                       "deepnotes train --data fashion-mnist --epochs 6"),
    "resnet18": ("ResNet-18 on Fashion-MNIST, 5 epochs (3)", "--model resnet18"),
}


def readme_command(needle: str) -> list[str]:
    """The README's one bash command containing ``needle``, as argv after ``deepnotes``."""
    found = [line.strip() for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
             for line in block.splitlines() if needle in line]
    if len(found) != 1:
        raise SystemExit(f"tour_times: {len(found)} README commands contain {needle!r}")
    return shlex.split(found[0])[1:]


def run(argv: list[str], folder: Path) -> str:
    """Seconds for ``deepnotes argv`` in ``folder``, or why it failed (its last line)."""
    quiet = ["--quiet"] if argv[0] in ("train", "tune", "learning-curve") else []
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "deepnotes", *argv, *quiet], cwd=folder,
                          capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return f"failed (exit {done.returncode}): {last}"
    return f"{time.perf_counter() - start:.0f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=list(SLOW), help="these rows only")
    args = parser.parse_args(argv)
    import torch  # after argparse: --help stays quick

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else \
        f"CPU, {torch.get_num_threads()} threads"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        samples = run(["sample", "all", "--out", "."], folder)
        print(f"| command (section) | seconds on {device} |\n| --- | --- |")
        print(f"| `deepnotes sample all` | {samples} |")
        print(f"| `deepnotes train`, LeNet-5 on the digits (quick start) | "
              f"{run(['train'], folder)} |", flush=True)
        for name in args.only or SLOW:
            row, needle = SLOW[name]
            print(f"| {row} | {run(readme_command(needle), folder)} |", flush=True)


if __name__ == "__main__":
    main()
