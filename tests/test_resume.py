"""Faults: kill -9 at any moment, kill during a checkpoint write, SIGTERM, a full disk, a NaN loss.

The oracle is an uninterrupted run with the same seed: on CPU a resumed run must end with the same
weights and metrics, bit for bit.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import spawn
from deepnotes.cli import main
from deepnotes.optim import create_optimizer
from deepnotes.runs.build import build_model
from deepnotes.runs.config import read_config
from deepnotes.train import checkpoint

pytestmark = pytest.mark.slow  # child processes

ARGS = ["train", "--data", "digits", "--epochs", "3", "--batch-size", "16", "--seed", "3",
        "--quiet"]


def train_args(out: Path, name: str) -> list[str]:
    return [*ARGS, "--out", str(out), "--name", name]


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def epoch_on_disk(run: Path) -> int:
    try:
        return json.loads((run / "state.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return -1


def wait_for(condition, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "the run ended before the moment to interrupt it"
        assert time.monotonic() < deadline
        time.sleep(0.01)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run, made twice: two CPU runs with one seed give identical weights."""
    out = tmp_path_factory.mktemp("ref")
    for name in ("a", "b"):
        rc, err = finish(spawn(*train_args(out, name)))
        assert rc == 0, err
    assert (out / "a/model.safetensors").read_bytes() == (out / "b/model.safetensors").read_bytes()
    return out / "a"


def assert_same_result(run: Path, reference: Path) -> None:
    weights = "model.safetensors"
    assert (run / weights).read_bytes() == (reference / weights).read_bytes()
    got, want = (json.loads((r / "metrics.json").read_text()) for r in (run, reference))
    assert got == want


def resume(run: Path) -> None:
    rc, err = finish(spawn("train", "--resume", run, "--quiet"))
    assert rc == 0, err


@pytest.mark.parametrize("after_epoch", [1, 2])
def test_sigkill_after_a_checkpoint_then_resume_is_bit_exact(tmp_path, reference, after_epoch):
    proc = spawn(*train_args(tmp_path, "r"))
    run = tmp_path / "r"
    wait_for(lambda: epoch_on_disk(run) >= after_epoch, proc)
    proc.kill()
    proc.wait()
    resume(run)
    assert_same_result(run, reference)


def test_sigkill_at_an_arbitrary_moment_then_resume_is_bit_exact(tmp_path, reference):
    proc = spawn(*train_args(tmp_path, "r"))
    run = tmp_path / "r"
    wait_for(lambda: (run / "config.json").exists(), proc)
    time.sleep(0.7)  # somewhere inside the first epochs, no checkpoint boundary in particular
    proc.kill()
    proc.wait()
    if not (run / "state.safetensors").exists():
        pytest.skip("killed before the first checkpoint; nothing to resume")
    resume(run)
    assert_same_result(run, reference)


def test_sigterm_checkpoints_mid_epoch_and_resume_is_bit_exact(tmp_path, reference):
    proc = spawn(*train_args(tmp_path, "r"))
    run = tmp_path / "r"
    wait_for(lambda: epoch_on_disk(run) >= 1, proc)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    rc, err = finish(proc)
    if rc == 0:
        pytest.skip("the run finished before the signal arrived")
    assert rc == 130
    assert "interrupted at epoch" in err and "--resume" in err
    assert "Traceback" not in err
    resume(run)
    assert_same_result(run, reference)


SLOW_WRITER = """
import os, sys, time
real_fsync = os.fsync
def slow_fsync(fd):
    writing = os.readlink(f"/proc/self/fd/{fd}")
    name = os.path.basename(writing)
    if name.startswith(".state.safetensors.") and name.endswith(".tmp") \
            and os.path.exists(os.environ["SLOW_AFTER"]):
        time.sleep(30)  # the test kills us here: temporary file written, not yet renamed
    real_fsync(fd)
os.fsync = slow_fsync
from deepnotes.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to name the file")
def test_kill_during_a_checkpoint_write_keeps_the_previous_one(tmp_path, reference):
    run = tmp_path / "r"
    env = {**os.environ, "SLOW_AFTER": str(run / "state.json")}  # slow from the 2nd checkpoint on
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, *train_args(tmp_path, "r")],
                            stderr=subprocess.PIPE, text=True, env=env)
    wait_for(lambda: (run / "state.json").exists() and any(run.glob(".state.safetensors.*.tmp")),
             proc)
    before = (run / "state.safetensors").read_bytes()
    proc.kill()
    proc.wait()
    assert (run / "state.safetensors").read_bytes() == before
    config = read_config(run)
    model = build_model(config)
    optimizer = create_optimizer(config.optimizer, model.parameters(), config.lr)
    assert checkpoint.load(run, model, optimizer)  # the previous one loads
    resume(run)  # temporary files are ignored
    assert_same_result(run, reference)


def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    real_fsync = os.fsync

    def fsync(fd):
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a folder's fsync after a rename
            return real_fsync(fd)
        calls["n"] += 1
        if calls["n"] > 5:  # config.json, then epoch 1's checkpoint of 4 files; then it is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    rc = main(train_args(tmp_path, "r"))
    err = capsys.readouterr().err
    assert rc == 2
    assert "No space left on device" in err and "Traceback" not in err
    run = tmp_path / "r"
    assert epoch_on_disk(run) == 1
    assert not list(run.glob(".*.tmp"))


def test_a_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    """Poison the data after the first epoch: the run stops at the first non-finite loss."""
    import torch

    from deepnotes.data import Batches, Normalizer
    from deepnotes.models import create_model
    from deepnotes.optim import create_optimizer
    from deepnotes.train import Trainer

    torch.manual_seed(0)
    x, y = torch.randn(64, 5), torch.arange(64) % 2
    model = create_model("mlp", num_classes=2, in_channels=5)
    trainer = Trainer(model, create_optimizer("adam", model.parameters(), 1e-3), epochs=1,
                      run_dir=tmp_path, progress=False)
    batches = Batches(x, y, torch.arange(64), 16, Normalizer([0.0] * 5, [1.0] * 5), shuffle=True)
    trainer.fit(batches)
    good = (tmp_path / "state.safetensors").read_bytes()
    x[10, 0] = float("nan")
    trainer.epochs = 3
    with pytest.raises(ValueError, match=r"loss became nan at epoch 2, step \d+ \(lr"):
        trainer.fit(batches)
    assert (tmp_path / "state.safetensors").read_bytes() == good
    assert all(torch.isfinite(p).all() for p in model.parameters())
