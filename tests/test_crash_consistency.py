"""A run killed with SIGKILL at any commit point, then recovered, ends as if never killed.

Fault injection, not sleeping and hoping: ``DEEPNOTES_KILL_AT=N`` makes the process kill itself at
its N-th commit point (every write and rename of a file, every folder made, moved or removed; see
``deepnotes.atomic``). For every N of a whole run the test kills it there, recovers as a user
would (``--resume`` once a checkpoint was committed, else the same command plus ``--overwrite``)
and checks: weights bit-identical to an uninterrupted run, metrics.json equal to that run's (so it
agrees with the weights), the same files and no others (no temporary file, lock or backup).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import faults
from conftest import run_cli_quietly, write_table
from deepnotes.train import checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ctx():
    return faults.context()


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    return write_table(tmp_path_factory.mktemp("data") / "table.csv")


def train_args(table: Path, out: Path, seed: int = 1) -> list:
    return ["train", "--data", table, "--epochs", 2, "--batch-size", 16, "--seed", seed,
            "--out", out, "--name", "r", "--quiet"]


def finetune_args(source: Path, table: Path, out: Path) -> list:
    return ["finetune", source, "--data", table, "--epochs", 2, "--batch-size", 16,
            "--out", out, "--name", "r", "--quiet"]


def commit_points(ctx, args, tmp: Path) -> list[str]:
    log = tmp / "commit.log"
    assert faults.run(ctx, args, {"DEEPNOTES_COMMIT_LOG": str(log)}) == 0
    return [line.split(" ", 1)[1] for line in log.read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(ctx, table, tmp_path_factory):
    """An uninterrupted run, its commit points, and a check that metrics.json agrees with it."""
    out = tmp_path_factory.mktemp("reference")
    points = commit_points(ctx, train_args(table, out), tmp_path_factory.mktemp("log"))
    run = out / "r"
    rc, stdout, err = run_cli_quietly("evaluate", run, "--json")
    assert rc == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    evaluated = json.loads(stdout)["test"]
    assert evaluated["confusion_matrix"] == metrics["test"]["confusion_matrix"]
    return run, points


def assert_same_run(run: Path, reference: Path) -> None:
    assert sorted(p.name for p in run.parent.iterdir()) == sorted(
        p.name for p in reference.parent.iterdir()), "a stray file or folder next to the run"
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in reference.iterdir())
    assert not list(run.parent.rglob("*.tmp"))
    for name in ("model.safetensors", "metrics.json"):
        assert (run / name).read_bytes() == (reference / name).read_bytes(), name
    state, ref_state = (checkpoint.committed_state(r) for r in (run, reference))
    assert state is not None and ref_state is not None
    assert state.checkpoint == ref_state.checkpoint
    assert [{k: v for k, v in row.items() if k != "seconds"} for row in state.history] == \
        [{k: v for k, v in row.items() if k != "seconds"} for row in ref_state.history]
    assert (run / "history.csv").read_text().count("\n") == len(state.history) + 1


def recover(ctx, args, run: Path) -> None:
    """What the messages tell a user to do: --resume a run with a checkpoint, else start again."""
    if (run / "state.safetensors").exists() and args[0] == "train":
        assert faults.run(ctx, ["train", "--resume", run, "--quiet"]) == 0
    else:
        assert faults.run(ctx, [*args, "--overwrite"]) == 0


def test_a_kill_at_every_commit_point_of_a_training_run(ctx, table, reference, tmp_path):
    ref_run, points = reference
    assert points.count("state.safetensors renamed") == 2  # two epochs, two checkpoints
    assert points[0] == "run folder made" and points[-1] == "confusion_matrix.png renamed"
    for n in range(1, len(points) + 1):
        out = tmp_path / f"kill-{n}"
        args = train_args(table, out)
        assert faults.run(ctx, args, {"DEEPNOTES_KILL_AT": str(n)}) == faults.KILLED, n
        recover(ctx, args, out / "r")
        assert_same_run(out / "r", ref_run)
        shutil.rmtree(out)


def test_a_kill_at_every_commit_point_of_a_finetune_run(ctx, table, reference, tmp_path):
    source = reference[0]
    ref_out = tmp_path / "reference"
    points = commit_points(ctx, finetune_args(source, table, ref_out), tmp_path)
    assert points.count("state.safetensors renamed") == 2
    for n in range(1, len(points) + 1):
        out = tmp_path / f"kill-{n}"
        args = finetune_args(source, table, out)
        assert faults.run(ctx, args, {"DEEPNOTES_KILL_AT": str(n)}) == faults.KILLED, n
        recover(ctx, args, out / "r")
        assert_same_run(out / "r", ref_out / "r")
        shutil.rmtree(out)


def test_a_kill_while_overwriting_keeps_the_earlier_run_until_the_new_one_commits(
        ctx, table, reference, tmp_path):
    ref_run, _ = reference
    earlier = tmp_path / "earlier"
    assert faults.run(ctx, train_args(table, earlier, seed=2)) == 0
    old_weights = (earlier / "r/model.safetensors").read_bytes()
    args = [*train_args(table, tmp_path / "probe"), "--overwrite"]
    shutil.copytree(earlier, tmp_path / "probe")
    points = commit_points(ctx, args, tmp_path)
    first_commit = points.index("state.safetensors renamed")
    assert "earlier run moved aside" in points[:first_commit]
    assert ".r.replaced removed" in points
    for n in range(1, points.index(".r.replaced removed") + 2):
        out = tmp_path / f"kill-{n}"
        shutil.copytree(earlier, out)
        args = [*train_args(table, out), "--overwrite"]
        assert faults.run(ctx, args, {"DEEPNOTES_KILL_AT": str(n)}) == faults.KILLED, n
        if n <= first_commit:  # nothing new committed: the earlier run is whole somewhere
            kept = [p / "model.safetensors" for p in (out / "r", out / ".r.replaced")]
            assert old_weights in [p.read_bytes() for p in kept if p.exists()], n
        recover(ctx, args[:-1], out / "r")
        assert_same_run(out / "r", ref_run)
        shutil.rmtree(out)
