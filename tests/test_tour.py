"""The README's tour runs as written: after ``deepnotes sample all --out .`` and the quick start's
``deepnotes train``, every ``deepnotes`` command of its bash blocks exits with 0, in order, one
slow test a section.

Made quick (each command otherwise as the README writes it):
- one epoch (``--epochs 1``, added where a training command has none; ``--more-epochs 1``), two
  tune trials, 500 date pairs for ``--data dates``;
- ``my_book.txt`` cut to 30 KB (the character model's one epoch);
- Fashion-MNIST read from a 2,000 + 500 image slice of Debian's files (the loader's system
  folder is pointed at it; a ``--nproc`` command, whose processes do not share this one's
  memory, is given the slice as ``--data-dir``).

Skipped, each with its reason (printed; a section skipped whole says them all), see
:func:`skip_reason`: several nodes (``--torchrun``, whose paths are a cluster's), a CUDA GPU this
machine lacks, Fashion-MNIST where Debian's files are missing, and an extra that is not
installed.
"""

from __future__ import annotations

import gzip
import importlib.util
import re
import shlex
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli_quietly
from deepnotes.data import idx, samples

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
QUICK_START = README.split("## Quick start")[1].split("\n## ")[0]
TOUR = README.split("## A tour that follows the notes")[1].split("\n## ")[0]
FASHION = Path("/usr/share/datasets/fashion-mnist")
TRAINING = {"train", "finetune", "compare-optimizers", "tune", "learning-curve",
            "word2vec train"}
SUFFIXES = (".png", ".csv", ".txt", ".bin", ".onnx")  # what the tour's files are named
EXTRAS = {"tune": [("optuna", "tune")], "export": [("onnx", "onnx"), ("onnxruntime", "onnx"),
                                                    ("onnxscript", "onnx")]}


def commands(text: str) -> list[str]:
    """The ``deepnotes ...`` commands of the bash blocks in ``text``, in order."""
    return [part.strip() for block in re.findall(r"```bash\n(.*?)```", text, re.S)
            for line in block.splitlines() for part in line.split("&&")
            if part.strip().startswith("deepnotes ")]


def sections() -> list[tuple[str, list[str]]]:
    """(section number, its commands) for the tour's sections 1, 2, ..."""
    parts = re.split(r"^### (\d+)\. .*$", TOUR, flags=re.M)
    return [(number, commands(body)) for number, body in zip(parts[1::2], parts[2::2])]


def command_name(argv: list[str]) -> str:
    return " ".join(argv[:2]) if argv[0] == "word2vec" else argv[0]


def option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def skip_reason(argv: list[str]) -> str | None:
    """Why this machine cannot run the command, or None."""
    if "--torchrun" in argv:
        return "several nodes: a cluster's paths (tests/test_distributed.py runs torchrun)"
    wants_cuda = "cuda" in (option(argv, "--device") or "") or "--gpus" in argv
    if wants_cuda and not torch.cuda.is_available():
        return "needs a CUDA GPU"
    gpus = option(argv, "--gpus")
    if gpus and max(map(int, gpus.split(","))) >= torch.cuda.device_count():
        return f"needs CUDA GPU {gpus} (this machine has {torch.cuda.device_count()})"
    if "fashion-mnist" in argv and not FASHION.is_dir():
        return f"needs Fashion-MNIST's files in {FASHION} (Debian's dataset-fashion-mnist)"
    needed = list(EXTRAS.get(command_name(argv), []))
    if "--tensorboard" in argv:
        needed.append(("tensorboard", "tensorboard"))
    for module, extra in needed:
        if importlib.util.find_spec(module) is None:
            return f"needs {module} (pip install -e \".[{extra}]\")"
    return None


def quick(argv: list[str]) -> list[str]:
    """The command made quick (see the module docstring)."""
    argv = list(argv)
    if "--more-epochs" in argv:
        argv[argv.index("--more-epochs") + 1] = "1"
    elif command_name(argv) in TRAINING and "--resume" not in argv:
        if "--epochs" in argv:
            argv[argv.index("--epochs") + 1] = "1"
        else:
            argv += ["--epochs", "1"]
    if "--trials" in argv:
        argv[argv.index("--trials") + 1] = "2"
    if option(argv, "--data") == "dates":
        argv[argv.index("--data") + 1] = "dates:500"
    if "--nproc" in argv and option(argv, "--data") == "fashion-mnist" and FASHION.is_dir():
        argv += ["--data-dir", "fashion"]  # the tour folder's slice (see tour_folder)
    return argv


def fashion_slice(folder: Path, train: int = 2000, test: int = 500) -> Path:
    """The first images and labels of Debian's Fashion-MNIST files, as plain IDX files."""
    folder.mkdir()
    for stem, n in [("train-images-idx3-ubyte", train), ("train-labels-idx1-ubyte", train),
                    ("t10k-images-idx3-ubyte", test), ("t10k-labels-idx1-ubyte", test)]:
        data = gzip.decompress((FASHION / f"{stem}.gz").read_bytes())
        dims = data[3]
        shape = struct.unpack(f">{dims}I", data[4:4 + 4 * dims])
        body = 4 + 4 * dims
        size = n * int(np.prod(shape[1:], dtype=np.int64))
        header = data[:4] + struct.pack(">I", n) + data[8:body]
        (folder / stem).write_bytes(header + data[body:body + size])
    return folder


def run(command: str) -> tuple[str | None, str | None]:
    """(why it was skipped, why it failed): both None when it ran and exited with 0."""
    argv = shlex.split(command)[1:]
    reason = skip_reason(argv)
    if reason:
        return reason, None
    rc, _, err = run_cli_quietly(*quick(argv))
    return None, None if rc == 0 else f"{command}\n  exit {rc}: {err.strip()[-600:]}"


@pytest.fixture(scope="module")
def tour_folder(tmp_path_factory):
    """A folder after the tour's start: the samples and the quick start's run."""
    folder = tmp_path_factory.mktemp("tour")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.setenv("DEEPNOTES_CACHE_DIR", str(folder / "cache"))
        mp.setattr(samples, "BOOK_BYTES", 30_000)  # corpus.txt stays whole
        if FASHION.is_dir():
            mp.setitem(idx.SYSTEM_DIRS, "fashion-mnist", fashion_slice(folder / "fashion"))
        start = commands(TOUR.split("### 1.")[0]) + commands(QUICK_START)
        assert start[:2] == ["deepnotes sample all --out .", "deepnotes train"]
        for command in start:
            skipped, failed = run(command)
            assert skipped is None and failed is None, failed or skipped
        assert (folder / "runs" / "lenet5-digits" / "model.safetensors").is_file()
        yield folder


def test_the_tour_has_its_sections_and_the_quick_start_a_command():
    numbers = [number for number, _ in sections()]
    assert numbers == [str(n) for n in range(1, len(numbers) + 1)] and len(numbers) >= 13
    assert all(found for _, found in sections())


def test_every_path_the_tour_reads_is_made_before():
    """Each file or run folder a command names is a sample, the quick start's run, or made by
    an earlier command (a --name, an --out)."""
    made = {f for _, files in samples.SAMPLES.values() for f in files} | {"runs/lenet5-digits"}
    outputs = ("--out", "--name")
    unmade = []
    for command in commands(TOUR):
        argv = shlex.split(command)[1:]
        if "--torchrun" in argv:
            continue  # a cluster's own paths (/shared/...)
        for i, token in enumerate(argv):
            if argv[i - 1] in outputs:
                continue
            path = token.rstrip("/")
            looks_like_a_path = "/" in path or Path(path).suffix in SUFFIXES
            if looks_like_a_path and " " not in path and path not in made:
                unmade.append(f"{token} in: {command}")
        name, out = option(argv, "--name"), option(argv, "--out")
        if name:
            made.add(f"runs/{name}")
        if out and out != ".":
            made.add(out)
    assert not unmade, "\n".join(unmade)


@pytest.mark.slow
@pytest.mark.parametrize("number, section", sections(), ids=[f"section-{n}" for n, _ in
                                                              sections()])
def test_the_tour_runs(tour_folder, number, section):
    skipped, failed = [], []
    for command in section:
        reason, failure = run(command)
        if reason:
            skipped.append(f"{command}  ({reason})")
        if failure:
            failed.append(failure)
    for line in skipped:
        print(f"section {number}: skipped {line}")
    assert not failed, "\n".join(failed)
    if skipped and len(skipped) == len(section):
        pytest.skip("; ".join(skipped))
