"""Shared helpers: run the CLI in this process or in a child process."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# Without a GPU, word2vec's Triton kernels run in Triton's interpreter, on CPU tensors; it reads
# this when triton is imported (by deepnotes.embeddings, just below), so it is set first
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from deepnotes.cli import main  # noqa: E402  # after TRITON_INTERPRET


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``deepnotes ARGS`` in-process: (exit status, stdout, stderr)."""
    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:  # argparse
        rc = exc.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def run_cli_quietly(*args) -> tuple[int, str, str]:
    """``deepnotes ARGS`` in-process without capsys (for module-scoped fixtures): (exit status,
    stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in args])
        except SystemExit as exc:  # argparse
            rc = exc.code
    return rc, out.getvalue(), err.getvalue()


def write_table(path, rows: int = 200, seed: int = 0):
    """A CSV table of ``rows`` rows: features a, b, c and a yes/no label that a and b predict in
    part (small data for tests that train many short runs)."""
    rng = np.random.default_rng(seed)
    lines = ["a,b,c,label"]
    for _ in range(rows):
        y = int(rng.integers(2))
        lines.append(f"{rng.normal(y, 1):.3f},{rng.normal(-y, 1):.3f},{rng.random():.3f},"
                     f"{'yes' if y else 'no'}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_photos(root: Path, per_class: int = 12, grey: bool = False, seed: int = 0) -> Path:
    """Three classes of small PNGs of assorted sizes (colour unless ``grey``)."""
    rng = np.random.default_rng(seed)
    for c in range(3):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = (9 + i % 5, 11 + i % 3) if grey else (9 + i % 5, 11 + i % 3, 3)
            pixels = (rng.random(shape) * 100 + c * 70).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"class{c}" / f"{i}.png")
    return root


def spawn(*args, **kwargs) -> subprocess.Popen:
    """``python -m deepnotes ARGS`` as a child process with pipes for stdout and stderr."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "deepnotes", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            **kwargs)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` skip cleanly on machines without a CUDA GPU."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def cli(capsys):
    return lambda *args: run_cli(capsys, *args)


def close(actual, expected, **tol) -> None:
    """assert_allclose on tensors or arrays, tolerances always explicit."""
    if isinstance(actual, torch.Tensor):
        actual = actual.detach().cpu().double().numpy()
    if isinstance(expected, torch.Tensor):
        expected = expected.detach().cpu().double().numpy()
    assert np.shape(actual) == np.shape(expected)
    np.testing.assert_allclose(actual, expected, **tol)


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def warnings_of(logger_name: str):
    """The messages of the warnings logged on ``logger_name`` inside the block; attached to the
    logger itself, as the CLI's tests stop deepnotes' records from reaching the root logger."""
    handler, logger = _Collect(), logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
