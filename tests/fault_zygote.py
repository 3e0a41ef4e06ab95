"""Imported once by the fork server of ``faults.py``: one CPU thread (GNU OpenMP cannot fork once
its threads run) and one small run through the CLI, so that every forked child starts warm."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np
import torch

from deepnotes.cli import main

torch.set_num_threads(1)


def _warm_up() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        rows = [f"{a:.3f},{b:.3f},{'yes' if a > b else 'no'}" for a, b in rng.normal(size=(64, 2))]
        data = Path(tmp) / "warm.csv"
        data.write_text("a,b,label\n" + "\n".join(rows) + "\n")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            main(["train", "--data", str(data), "--epochs", "1", "--batch-size", "16", "--out",
                  tmp, "--name", "w", "--quiet"])
            main(["finetune", str(Path(tmp) / "w"), "--data", str(data), "--epochs", "1",
                  "--batch-size", "16", "--out", tmp, "--name", "f", "--quiet"])
            main(["evaluate", str(Path(tmp) / "w")])


_warm_up()
