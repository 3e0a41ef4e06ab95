"""The run folder as a user's work: safe names, marked ownership, one writer, a checkpoint that is
committed only when good, repair of what a kill left behind (issue 15's defects, one test each)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import run_cli_quietly, write_table
from deepnotes import atomic
from deepnotes.errors import DeepnotesError
from deepnotes.lock import FolderLock
from deepnotes.runs import folder
from deepnotes.train import checkpoint


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    return write_table(tmp_path_factory.mktemp("data") / "table.csv", rows=120)


def train(table: Path, out: Path, *more) -> tuple[int, str, str]:
    return run_cli_quietly("train", "--data", table, "--epochs", 2, "--batch-size", 16,
                           "--out", out, "--quiet", *more)


@pytest.fixture(scope="module")
def finished(table, tmp_path_factory) -> Path:
    """A finished two-epoch run, and a copy of its folder after the first epoch."""
    out = tmp_path_factory.mktemp("finished")
    rc, _, err = train(table, out, "--name", "r", "--epochs", 1)
    assert rc == 0, err
    shutil.copytree(out / "r", out / "after-epoch-1")
    rc, _, err = run_cli_quietly("train", "--resume", out / "r", "--epochs", 2,
                                 "--allow-changes", "--quiet")
    assert rc == 0, err
    return out / "r"


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("name", ["../x", "/tmp/elsewhere", "..", ".", "a/b", ".hidden", ""])
def test_a_name_must_be_one_plain_folder_name(table, tmp_path, name):
    rc, _, err = train(table, tmp_path / "runs", "--name", name)
    assert rc == 2
    assert "--name" in one_error_line(err)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_overwrite_refuses_a_folder_deepnotes_did_not_make(table, tmp_path):
    foreign = tmp_path / "runs" / "x"
    foreign.mkdir(parents=True)
    (foreign / "config.json").write_text("{}")
    (foreign / "pytorch_model.bin").write_bytes(b"someone's weights")
    rc, _, err = train(table, tmp_path / "runs", "--name", "x", "--overwrite")
    assert rc == 2
    assert "not a deepnotes run folder" in one_error_line(err)
    assert (foreign / "pytorch_model.bin").read_bytes() == b"someone's weights"


def test_resume_refuses_a_folder_deepnotes_did_not_make(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    rc, _, err = run_cli_quietly("train", "--resume", tmp_path, "--quiet")
    assert rc == 2
    one_error_line(err)
    assert (tmp_path / "config.json").read_text() == "{}"


def test_default_names_are_numbered_without_a_race(tmp_path):
    made = [folder.create(tmp_path, None, "lenet5-digits", False) for _ in range(3)]
    assert [r.path.name for r in made] == ["lenet5-digits", "lenet5-digits-2", "lenet5-digits-3"]
    for r in made:
        r.close()
    with pytest.raises(DeepnotesError, match="exists"):
        folder.create(tmp_path, "lenet5-digits", "x", False)


@pytest.mark.slow
def test_a_second_process_is_refused_with_the_pid_that_holds_the_lock(finished, tmp_path):
    run = tmp_path / "r"
    shutil.copytree(finished, run)
    with FolderLock(run):  # flock is per open file: this process counts as another one
        rc, _, err = run_cli_quietly("train", "--resume", run, "--quiet")
        assert (run / ".lock").read_text().strip() == str(os.getpid())
    assert rc == 2
    assert f"PID {os.getpid()}" in one_error_line(err)
    assert not (run / ".lock").exists()  # released: the file goes with it


def test_a_killed_holder_leaves_no_lock_behind(tmp_path):
    lock = FolderLock(tmp_path).acquire()
    os.close(lock.fd)  # what the kernel does when the holder dies
    lock.fd = None
    with FolderLock(tmp_path) as held:
        assert held.fd is not None
        assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())
    assert not (tmp_path / ".lock").exists()


@pytest.mark.slow
def test_a_model_file_behind_the_checkpoint_is_repaired_on_resume(finished, tmp_path):
    """Defect 2: killed after state.safetensors was renamed, before model.safetensors was."""
    run = tmp_path / "r"
    shutil.copytree(finished, run)
    stale = finished.parent / "after-epoch-1" / "model.safetensors"
    shutil.copy(stale, run / "model.safetensors")
    rc, out, err = run_cli_quietly("evaluate", run, "--json")  # reads the committed weights
    assert rc == 0, err
    assert "behind the run's last checkpoint" in err
    assert (run / "model.safetensors").read_bytes() == stale.read_bytes()  # evaluate writes nothing
    rc, _, err = run_cli_quietly("train", "--resume", run, "--quiet")
    assert rc == 0, err
    assert (run / "model.safetensors").read_bytes() == (finished / "model.safetensors").read_bytes()
    assert (run / "metrics.json").read_text() == (finished / "metrics.json").read_text()


@pytest.mark.slow
def test_a_folder_killed_before_its_first_checkpoint_can_be_started_again(table, tmp_path):
    """Defect 3: the folder exists, with or without config.json, and no checkpoint."""
    out = tmp_path / "runs"
    (out / "r").mkdir(parents=True)
    (out / "r" / ".lock").write_text("12345\n")
    rc, _, err = run_cli_quietly("train", "--resume", out / "r", "--quiet")
    assert rc == 2
    assert "--overwrite" in one_error_line(err)
    rc, _, err = train(table, out, "--name", "r")  # the same command again: not --resume
    assert rc == 2
    line = one_error_line(err)
    assert "before its first checkpoint; --overwrite" in line and "--resume" not in line
    rc, _, err = train(table, out, "--name", "r", "--overwrite")
    assert rc == 0, err
    assert (out / "r" / "metrics.json").is_file()


def test_temporary_files_of_killed_writers_are_swept_and_live_ones_kept(tmp_path):
    """Defect 4: random names made with O_EXCL; leftovers of dead processes are removed."""
    dead = tmp_path / ".model.safetensors.999999999.abc.tmp"
    live = tmp_path / f".model.safetensors.{os.getppid()}.abc.tmp"
    dead.write_bytes(b"half")
    live.write_bytes(b"being written")
    assert atomic.sweep(tmp_path) == [dead]
    assert live.exists() and not dead.exists()


def test_a_planted_symlink_is_never_followed(tmp_path):
    target = tmp_path / "victim"
    target.write_text("precious")
    for name in (f".out.json.tmp-{os.getpid()}", f".out.json.{os.getpid()}.tmp"):
        (tmp_path / name).symlink_to(target)
    atomic.write_text(tmp_path / "out.json", "{}")
    assert target.read_text() == "precious"
    assert (tmp_path / "out.json").read_text() == "{}"
    assert not (tmp_path / "out.json").is_symlink()


@pytest.mark.slow
def test_weights_that_give_a_nan_dev_loss_are_never_committed(tmp_path):
    """Defect 5: finite weights whose forward pass gives NaN were kept as the good checkpoint."""
    rc, _, err = run_cli_quietly("train", "--data", "breast-cancer", "--optimizer", "sgd",
                                 "--lr", "1e6", "--schedule", "constant", "--epochs", "3",
                                 "--batch-size", "200", "--out", tmp_path, "--name", "a",
                                 "--quiet")
    assert rc == 2
    line = one_error_line(err)
    assert "dev loss became" in line or "loss became" in line
    assert not (tmp_path / "a").exists()  # nothing good was ever committed: nothing is left


@pytest.mark.slow
def test_a_failed_overwrite_brings_the_earlier_run_back(finished, table, tmp_path):
    """Defect 7: the new run diverges before its first checkpoint."""
    out = tmp_path / "runs"
    shutil.copytree(finished, out / "r")
    before = {p.name: p.read_bytes() for p in (out / "r").iterdir()}
    rc, _, err = train(table, out, "--name", "r", "--overwrite", "--optimizer", "sgd",
                       "--lr", "1e9", "--schedule", "constant")
    assert rc == 2, err
    assert "loss became" in one_error_line(err)
    assert {p.name: p.read_bytes() for p in (out / "r").iterdir()} == before
    assert sorted(p.name for p in out.iterdir()) == ["r"]


@pytest.mark.slow
def test_an_interrupted_overwrite_says_how_to_bring_the_earlier_run_back(finished, tmp_path):
    out = tmp_path / "runs"
    shutil.copytree(finished, out / ".r.replaced")  # a kill after moving it aside
    (out / "r").mkdir()
    rc, _, err = run_cli_quietly("train", "--resume", out / "r", "--quiet")
    assert rc == 2
    assert f"mv {out / '.r.replaced'} {out / 'r'}" in one_error_line(err)


@pytest.mark.slow
def test_a_model_file_holding_nan_is_refused_with_the_tensor_name(finished, table, tmp_path):
    run = tmp_path / "r"
    shutil.copytree(finished, run)
    for name in ("model.safetensors", "state.safetensors"):
        tensors = load_file(run / name)
        key = next(k for k in tensors if k.endswith("weight") and "optim" not in k)
        tensors[key][0] = float("nan")
        meta = checkpoint._metadata(run / name)
        save_file(tensors, run / name, metadata=meta)
    rc, _, err = run_cli_quietly("evaluate", run)
    assert rc == 2
    line = one_error_line(err)
    assert "model.safetensors" in line and "NaN" in line and "weight" in line
    rc, _, err = run_cli_quietly("train", "--resume", run, "--quiet", "--epochs", "3",
                                 "--allow-changes")
    assert rc == 2
    assert "NaN" in one_error_line(err)
    rc, _, err = run_cli_quietly("finetune", run, "--data", table, "--epochs", "1", "--out",
                                 tmp_path / "ft", "--quiet")
    assert rc == 2
    assert "NaN" in one_error_line(err)
    assert not (tmp_path / "ft").exists() or not any((tmp_path / "ft").iterdir())


def test_checkpoint_refuses_to_save_non_finite_weights(tmp_path):
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight[0, 0] = float("inf")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    state = {"epoch": 1, "step": 0, "global_step": 3, "history": []}
    with pytest.raises(DeepnotesError, match="'weight'"):
        checkpoint.save(tmp_path, model, optimizer, state)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_a_run_from_before_checkpoint_ids_reads_and_resumes_without_repair(finished, tmp_path):
    run = tmp_path / "r"
    shutil.copytree(finished, run)
    save_file(load_file(run / "model.safetensors"), run / "model.safetensors")  # no metadata
    tensors = load_file(run / "state.safetensors")
    meta = checkpoint._metadata(run / "state.safetensors")
    state = json.loads(meta[checkpoint.STATE_KEY])
    del state["checkpoint"]
    save_file(tensors, run / "state.safetensors",
              metadata={checkpoint.STATE_KEY: json.dumps(state)})
    legacy = json.loads((run / "state.json").read_text())
    del legacy["checkpoint"]
    (run / "state.json").write_text(json.dumps(legacy))
    before = (run / "model.safetensors").read_bytes()
    rc, _, err = run_cli_quietly("evaluate", run)
    assert rc == 0 and "behind" not in err, err
    assert checkpoint.repair(run) is False
    assert (run / "model.safetensors").read_bytes() == before


def test_a_nan_loss_is_a_loss_diverged_error_that_tuners_can_tell_apart(tmp_path):
    """compare and tune count a divergence as a result by its type, not by its message."""
    from deepnotes.data import Batches, Normalizer
    from deepnotes.errors import LossDiverged
    from deepnotes.models import create_model
    from deepnotes.optim import create_optimizer
    from deepnotes.train import Trainer, TrainingInterrupted

    torch.manual_seed(0)
    x, y = torch.randn(32, 3), torch.arange(32) % 2
    x[5, 0] = float("nan")
    model = create_model("mlp", num_classes=2, in_channels=3)
    trainer = Trainer(model, create_optimizer("adam", model.parameters(), 1e-3), epochs=1,
                      run_dir=tmp_path, progress=False)
    with pytest.raises(LossDiverged, match="loss became nan") as exc:
        trainer.fit(Batches(x, y, torch.arange(32), 8, Normalizer([0.0] * 3, [1.0] * 3)))
    assert isinstance(exc.value, LossDiverged)
    assert not isinstance(TrainingInterrupted("interrupted at epoch 1, step 2"), LossDiverged)
    assert not isinstance(DeepnotesError("the loss became a file name"), LossDiverged)
