"""The CLI's error contract, command by command.

For bad input the CLI must print exactly one line on stderr naming the argument or file and what
was expected (lines starting with ``warning:`` aside), exit with status 2, never show a
traceback, and leave nothing half-written: no run folder under ``--out``, no changed file in a
run folder it refused to touch. Everything runs in-process on tiny generated data; whatever
trains does so for one or two epochs on breast-cancer, digits or a folder of 8x8 PNGs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli, run_cli_quietly
from deepnotes.runs.folder import DERIVED_AT_THE_END

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible here")


# ---------------------------------------------------------------- helpers


def call(capsys, *argv) -> tuple[int, str, str]:
    """``deepnotes ARGV`` in-process with capsys: (exit status, stdout, stderr)."""
    capsys.readouterr()  # drop anything printed before
    return run_cli(capsys, *argv)


def error_lines(err: str) -> list[str]:
    """The non-blank stderr lines that are not warnings."""
    return [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")]


def refused(result, *needles: str, runs: Path | None = None) -> str:
    """Assert the contract for bad input; return the one error line."""
    rc, out, err = result
    assert "Traceback" not in out + err, err
    assert rc == 2, (rc, err)
    lines = error_lines(err)
    assert len(lines) == 1, lines
    line = lines[0]
    for needle in needles:
        assert needle in line, (needle, line)
    if runs is not None:
        assert no_run_folder(runs), sorted(p.name for p in runs.iterdir())
    return line


def no_run_folder(runs: Path) -> bool:
    """``--out`` holds nothing at all (not even a hidden temporary file)."""
    return not runs.exists() or not any(runs.iterdir())


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def train(runs: Path, *args) -> list:
    """Arguments of ``deepnotes train`` writing under ``runs``, without progress bars."""
    return ["train", *args, "--out", runs, "--quiet"]


def copy_run(run: Path, tmp_path: Path, name: str = "run") -> Path:
    """A private copy of a fixture run, so a test cannot disturb the others."""
    return Path(shutil.copytree(run, tmp_path / name))


def write_png(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def image_folder(root: Path, classes=("cat", "dog"), per_class: int = 10) -> Path:
    """``root/<class>/<n>.png``: random 8x8 grey images, all different."""
    seed = 0
    for name in classes:
        for i in range(per_class):
            write_png(root / name / f"{i}.png", seed)
            seed += 1
    return root


def write_csv(path: Path, rows: int = 40, edit=None) -> Path:
    """A CSV of ``rows`` rows: two numeric features and a 0/1 label; ``edit(lines)`` alters it."""
    rng = np.random.default_rng(0)
    lines = ["f1,f2,label"] + [f"{rng.normal():.4f},{rng.normal():.4f},{i % 2}"
                               for i in range(rows)]
    if edit:
        edit(lines)
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------- runs shared by the module


@pytest.fixture(scope="module")
def cancer_run(tmp_path_factory) -> Path:
    """A finished two-epoch MLP run on breast-cancer (a table)."""
    runs = tmp_path_factory.mktemp("cancer")
    rc, _, err = run_cli_quietly(*train(runs, "--data", "breast-cancer", "--epochs", 2,
                                     "--name", "bc"))
    assert rc == 0, err
    return runs / "bc"


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    """A finished one-epoch LeNet-5 run on digits (images)."""
    runs = tmp_path_factory.mktemp("digits")
    rc, _, err = run_cli_quietly(*train(runs, "--data", "digits", "--epochs", 1, "--name", "dg"))
    assert rc == 0, err
    return runs / "dg"


# ---------------------------------------------------------------- data


@pytest.mark.parametrize("spec", ["nope/missing.csv", "/no/such/folder"])
def test_missing_data_path(capsys, tmp_path, spec):
    runs = tmp_path / "runs"
    refused(call(capsys, *train(runs, "--data", spec, "--epochs", 1)), spec, runs=runs)


def test_unknown_data_name_suggests_a_close_match(capsys, tmp_path):
    runs = tmp_path / "runs"
    line = refused(call(capsys, *train(runs, "--data", "digit", "--epochs", 1)), "'digit'",
                   runs=runs)
    assert "'digits'" in line


def test_existing_file_that_is_not_csv_is_not_called_missing(capsys, tmp_path):
    runs = tmp_path / "runs"
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    line = refused(call(capsys, *train(runs, "--data", notes, "--epochs", 1)), str(notes),
                   runs=runs)
    assert "no such" not in line.lower()


def test_empty_folder(capsys, tmp_path):
    runs, empty = tmp_path / "runs", tmp_path / "empty"
    empty.mkdir()
    refused(call(capsys, *train(runs, "--data", empty, "--epochs", 1)), str(empty), runs=runs)


def test_image_folder_with_one_class(capsys, tmp_path):
    runs = tmp_path / "runs"
    folder = image_folder(tmp_path / "one", classes=("cat",), per_class=3)
    refused(call(capsys, *train(runs, "--data", folder, "--epochs", 1)), str(folder),
            "at least 2 classes", runs=runs)


CORRUPTIONS = {
    "zero-byte": lambda good: b"",
    "truncated": lambda good: good[: len(good) // 2],
    "not-an-image": lambda good: b"this is text, not a PNG\n",
}


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_corrupt_image_is_named_with_skip_bad_hint(capsys, tmp_path, kind):
    runs = tmp_path / "runs"
    folder = image_folder(tmp_path / "imgs")
    bad = folder / "cat" / "bad.png"
    bad.write_bytes(CORRUPTIONS[kind]((folder / "cat" / "0.png").read_bytes()))
    refused(call(capsys, *train(runs, "--data", folder, "--epochs", 1)), str(bad), "--skip-bad",
            runs=runs)


@pytest.mark.slow
def test_skip_bad_trains_and_warns_with_the_count(capsys, tmp_path):
    runs = tmp_path / "runs"
    folder = image_folder(tmp_path / "imgs")
    (folder / "cat" / "bad.png").write_bytes(b"")
    (folder / "dog" / "worse.png").write_bytes(b"not a png")
    rc, out, err = call(capsys, *train(runs, "--data", folder, "--skip-bad", "--epochs", 1,
                                       "--name", "skip"))
    assert rc == 0, err
    assert "Traceback" not in out + err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert any("skipped the 2 unreadable image files" in line for line in warnings), warnings
    assert (runs / "skip" / "model.safetensors").is_file()


def test_csv_with_a_non_numeric_cell_names_line_and_column(capsys, tmp_path):
    runs = tmp_path / "runs"

    def edit(lines):
        lines[5] = "1.0,abc,1"  # file line 6

    csv = write_csv(tmp_path / "bad.csv", edit=edit)
    line = refused(call(capsys, *train(runs, "--data", csv, "--epochs", 1)), str(csv),
                   "line 6", "'f2'", "'abc'", runs=runs)
    assert "number" in line


def test_csv_without_the_label_column(capsys, tmp_path):
    runs = tmp_path / "runs"
    csv = write_csv(tmp_path / "good.csv")
    refused(call(capsys, *train(runs, "--data", csv, "--label-column", "nope", "--epochs", 1)),
            str(csv), "'nope'", runs=runs)


def test_csv_with_nan(capsys, tmp_path):
    runs = tmp_path / "runs"

    def edit(lines):
        lines[7] = "nan,1.0,0"  # file line 8

    csv = write_csv(tmp_path / "nan.csv", edit=edit)
    refused(call(capsys, *train(runs, "--data", csv, "--epochs", 1)), str(csv), "NaN",
            "line 8", "'f1'", runs=runs)


def test_csv_too_small_to_split(capsys, tmp_path):
    runs = tmp_path / "runs"
    csv = write_csv(tmp_path / "small.csv", rows=4)
    refused(call(capsys, *train(runs, "--data", csv, "--epochs", 1)), "too few", runs=runs)


def test_csv_too_small_to_split_names_the_file(capsys, tmp_path):
    runs = tmp_path / "runs"
    csv = write_csv(tmp_path / "small.csv", rows=4)
    refused(call(capsys, *train(runs, "--data", csv, "--epochs", 1)), str(csv), runs=runs)


# ---------------------------------------------------------------- names: model, optimizer, schedule


@pytest.mark.parametrize("args, needles", [
    (["--model", "lenet"], ["'lenet'", "'lenet5'", "mlp"]),  # the valid names, a suggestion
    (["--optimizer", "adm"], ["'adm'", "'adam'", "sgd"]),
    (["--schedule", "cosin"], ["schedule", "'cosin'", "cosine"]),
], ids=["model", "optimizer", "schedule"])
def test_unknown_names(capsys, tmp_path, args, needles):
    runs = tmp_path / "runs"
    refused(call(capsys, *train(runs, *args, "--epochs", 1)), *needles, runs=runs)


@pytest.mark.parametrize("model, data, suggested", [
    ("mlp", "digits", "lenet5"),
    ("lenet5", "breast-cancer", "mlp"),
])
def test_model_that_does_not_fit_the_data(capsys, tmp_path, model, data, suggested):
    runs = tmp_path / "runs"
    line = refused(call(capsys, *train(runs, "--model", model, "--data", data, "--epochs", 1)),
                   f"--model {model}", data, runs=runs)
    assert f"--model {suggested}" in line


# ---------------------------------------------------------------- numbers and devices


@pytest.mark.parametrize("args, needle", [
    (["--batch-size", "0"], "--batch-size 0"),
    (["--lr", "0"], "--lr 0"),
    (["--lr", "-1"], "--lr -1"),
    (["--lr", "nan"], "--lr nan"),
    (["--epochs", "0"], "--epochs 0"),
    (["--device", "tpu"], "--device"),
    (["--gpus", "x,y"], "--gpus"),
    (["--batch-size", "3000000000"], "--batch-size 3000000000: expected an integer from 1 to"),
    (["--image-size", "100000", "--model", "resnet18"], "--image-size 100000"),
    (["--nproc", "1", "--torchrun", '"x'], "--torchrun '\"x': No closing quotation"),
    (["--image-size", "40"], "--image-size 40: resizes images, and --data breast-cancer holds "
                             "table data"),
    (["--image-size", "40", "--model", "charlm"], "--image-size 40: resizes images, and --model "
                                                  "charlm reads lm data"),
    (["--bf16", "--precision", "32"], "--bf16 and --precision 32: give one"),
    (["--label-column", "y"], "--label-column y: names a column of a CSV file, and --data "
                              "breast-cancer is not one"),
    (["--data-dir", "."], "--data-dir .: the folder of fashion-mnist's or mnist's IDX files"),
], ids=["batch-0", "lr-0", "lr-neg", "lr-nan", "epochs-0", "tpu", "gpus", "batch-huge",
        "side-huge", "torchrun-quote", "side-of-a-table", "side-of-text", "bf16-and-32",
        "label-column-of-a-named-set", "data-dir-of-a-named-set"])
def test_impossible_numbers_and_devices(capsys, tmp_path, args, needle):
    runs = tmp_path / "runs"
    refused(call(capsys, *train(runs, "--data", "breast-cancer", "--epochs", 1, *args)), needle,
            runs=runs)


@NO_CUDA
@pytest.mark.parametrize("device", ["cuda", "cuda:7"])
def test_cuda_on_a_machine_without_one(capsys, tmp_path, device):
    runs = tmp_path / "runs"
    refused(call(capsys, *train(runs, "--data", "breast-cancer", "--epochs", 1,
                                "--device", device)), f"--device {device}", "--device cpu",
            runs=runs)


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() > 7,
                    reason="needs a machine with 1 to 7 visible GPUs")
def test_gpu_index_that_does_not_exist_lists_the_visible_ones(capsys, tmp_path):
    runs = tmp_path / "runs"
    refused(call(capsys, *train(runs, "--data", "breast-cancer", "--epochs", 1,
                                "--device", "cuda:7")), "--device cuda:7", "cuda:0", runs=runs)


@pytest.mark.parametrize("args, needle", [
    (["--batch-size", "abc"], "--batch-size"),
    (["--epochs", "1.5"], "--epochs"),
    (["--lr", "fast"], "--lr"),
    (["--learning-rate", "0.1"], "--learning-rate"),
], ids=["batch-abc", "epochs-float", "lr-word", "unknown-option"])
def test_argparse_errors_are_one_line(capsys, tmp_path, args, needle):
    runs = tmp_path / "runs"
    refused(call(capsys, *train(runs, *args)), needle, runs=runs)


# ---------------------------------------------------------------- the output folder


def test_existing_name_is_refused_and_left_untouched(capsys, tmp_path):
    runs = tmp_path / "runs"
    args = train(runs, "--data", "breast-cancer", "--epochs", 1, "--name", "r1")
    rc, _, err = call(capsys, *args)
    assert rc == 0, err
    before = snapshot(runs / "r1")
    assert "model.safetensors" in before

    refused(call(capsys, *args), "--name r1", "--resume", "--overwrite")
    assert snapshot(runs / "r1") == before
    assert sorted(p.name for p in runs.iterdir()) == ["r1"]

    rc, out, err = call(capsys, *args, "--overwrite")
    assert rc == 0, err
    assert "Traceback" not in out + err
    assert (runs / "r1" / "model.safetensors").is_file()


def test_failed_overwrite_leaves_no_mixed_run_folder(capsys, tmp_path):
    runs = tmp_path / "runs"
    rc, _, err = call(capsys, *train(runs, "--data", "breast-cancer", "--epochs", 1,
                                     "--name", "r1"))
    assert rc == 0, err
    before = snapshot(runs / "r1")
    rc, out, err = call(capsys, *train(runs, "--data", "breast-cancer", "--epochs", 1,
                                       "--name", "r1", "--overwrite", "--optimizer", "sgd",
                                       "--lr", "1e30"))
    assert rc == 2 and "Traceback" not in out + err
    # either the old run survives whole or the folder is gone: never new config + old weights
    assert not (runs / "r1").exists() or snapshot(runs / "r1") == before


def test_overwrite_refuses_a_folder_that_is_not_a_run(capsys, tmp_path):
    runs = tmp_path / "runs"
    (runs / "mine").mkdir(parents=True)
    (runs / "mine" / "thesis.tex").write_text("precious\n")
    refused(call(capsys, *train(runs, "--data", "breast-cancer", "--epochs", 1, "--name", "mine",
                                "--overwrite")), str(runs / "mine"))
    assert (runs / "mine" / "thesis.tex").read_text() == "precious\n"


def test_out_in_a_read_only_folder(capsys, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write to a 0o500 folder (root)")
        runs = locked / "runs"
        refused(call(capsys, *train(runs, "--data", "breast-cancer", "--epochs", 1)), "--out",
                str(runs), runs=runs)
    finally:
        locked.chmod(0o700)


def test_out_below_a_regular_file(capsys, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder\n")
    runs = blocker / "runs"
    refused(call(capsys, *train(runs, "--data", "breast-cancer", "--epochs", 1)), "--out",
            str(runs))
    assert blocker.read_text() == "not a folder\n"


# ---------------------------------------------------------------- resume


def test_resume_of_a_folder_that_is_not_a_run(capsys, tmp_path):
    runs, folder = tmp_path / "runs", tmp_path / "plain"
    folder.mkdir()
    (folder / "notes.txt").write_text("hi\n")
    refused(call(capsys, *train(runs, "--resume", folder)), str(folder), "config.json",
            runs=runs)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_resume_of_a_run_without_a_checkpoint(capsys, tmp_path, cancer_run):
    run = copy_run(cancer_run, tmp_path)
    for name in ("state.safetensors", "state.json"):
        (run / name).unlink()
    before = snapshot(run)
    refused(call(capsys, *train(tmp_path / "runs", "--resume", run)), str(run), "checkpoint")
    assert snapshot(run) == before


def test_resume_with_another_model_is_refused(capsys, tmp_path, digits_run):
    run = copy_run(digits_run, tmp_path)
    before = snapshot(run)
    refused(call(capsys, *train(tmp_path / "runs", "--resume", run, "--model", "mlp")),
            str(run), "lenet5", "mlp")
    assert snapshot(run) == before


def test_resume_with_a_changed_lr_needs_allow_changes(capsys, tmp_path, cancer_run):
    run = copy_run(cancer_run, tmp_path)
    before = snapshot(run)
    refused(call(capsys, *train(tmp_path / "runs", "--resume", run, "--lr", "0.01")), str(run),
            "lr", "--allow-changes")
    assert snapshot(run) == before

    rc, out, err = call(capsys, *train(tmp_path / "runs", "--resume", run, "--lr", "0.01",
                                       "--allow-changes"))
    assert rc == 0, err
    assert "Traceback" not in out + err
    assert any(line.startswith("warning:") and "lr" in line for line in err.splitlines()), err


@pytest.mark.parametrize("damage", [
    lambda b: b[: len(b) // 2],
    lambda b: b"",
    lambda b: b"\x10\x00\x00\x00\x00\x00\x00\x00" + b'{"a": 1}' + b"garbage",
], ids=["truncated", "empty", "bad-header"])
def test_resume_from_a_corrupt_state_checkpoint(capsys, tmp_path, cancer_run, damage):
    run = copy_run(cancer_run, tmp_path)
    state = run / "state.safetensors"
    state.write_bytes(damage(state.read_bytes()))
    refused(call(capsys, *train(tmp_path / "runs", "--resume", run)), "corrupt checkpoint",
            str(state))


# ---------------------------------------------------------------- evaluate and predict


def test_evaluate_of_a_folder_that_is_not_a_run(capsys, tmp_path):
    refused(call(capsys, "evaluate", tmp_path), str(tmp_path), "config.json")


@pytest.mark.parametrize("damaged", ["model.safetensors", "state.safetensors"])
def test_evaluate_reads_the_kept_weights_from_the_file_that_is_whole(capsys, tmp_path,
                                                                     cancer_run, damaged):
    """The kept weights are in both files (the checkpoint's best.* or model.*, and
    model.safetensors): with one damaged, evaluate scores the run as before, and says so."""
    rc, intact, err = call(capsys, "evaluate", cancer_run, "--json")
    assert rc == 0, err
    run = copy_run(cancer_run, tmp_path)
    (run / damaged).write_bytes((run / damaged).read_bytes()[:100])
    rc, out, err = call(capsys, "evaluate", run, "--json")
    assert rc == 0 and "Traceback" not in err, err
    assert json.loads(out) == json.loads(intact)
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert any(f"corrupt checkpoint {run / damaged}" in line for line in warnings), err


def test_evaluate_with_both_weight_files_corrupt(capsys, tmp_path, cancer_run):
    run = copy_run(cancer_run, tmp_path)
    for name in ("model.safetensors", "state.safetensors"):
        (run / name).write_bytes((run / name).read_bytes()[:100])
    refused(call(capsys, "evaluate", run), "corrupt checkpoint", str(run / "model.safetensors"))


def test_export_into_a_folder_is_one_line_naming_it(capsys, tmp_path, cancer_run):
    folder = tmp_path / "exports"
    folder.mkdir()
    refused(call(capsys, "export", cancer_run, "--out", folder), f"--out {folder}: a folder")
    assert not any(folder.iterdir())


def test_evaluate_bad_split_is_one_line(capsys, cancer_run):
    refused(call(capsys, "evaluate", cancer_run, "--split", "val"), "--split", "'val'")


def test_evaluate_of_a_good_run_succeeds(capsys, cancer_run):
    """The control for the refusals around it: a sound run folder evaluates."""
    rc, out, err = call(capsys, "evaluate", cancer_run)
    assert "Traceback" not in out + err
    assert rc == 0, err
    assert "test" in out


@pytest.mark.parametrize("data", ["digits", "csv"])
def test_evaluate_on_data_of_another_shape(capsys, tmp_path, cancer_run, data):
    spec = str(write_csv(tmp_path / "two.csv")) if data == "csv" else data
    refused(call(capsys, "evaluate", cancer_run, "--data", spec), f"--data {spec}", "30")


def test_predict_of_a_missing_image(capsys, tmp_path, digits_run):
    missing = tmp_path / "missing.png"
    refused(call(capsys, "predict", digits_run, missing), str(missing))


def test_predict_of_a_corrupt_image(capsys, tmp_path, digits_run):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    refused(call(capsys, "predict", digits_run, bad), str(bad))


def test_predict_with_a_table_run(capsys, tmp_path, cancer_run):
    image = write_png(tmp_path / "x.png", 0)
    refused(call(capsys, "predict", cancer_run, image), str(cancer_run), "table")


def test_predict_top_k_zero(capsys, tmp_path, digits_run):
    image = write_png(tmp_path / "x.png", 0)
    refused(call(capsys, "predict", digits_run, image, "--top-k", "0"), "--top-k 0")


# ---------------------------------------------------------------- an incomplete config.json


def incomplete_run(run: Path, tmp_path: Path) -> Path:
    run = copy_run(run, tmp_path)
    (run / "config.json").write_text("{}\n")
    return run


def test_evaluate_of_a_run_with_an_incomplete_config(capsys, tmp_path, cancer_run):
    run = incomplete_run(cancer_run, tmp_path)
    refused(call(capsys, "evaluate", run), "config.json")


def test_resume_of_a_run_with_an_incomplete_config(capsys, tmp_path, cancer_run):
    run = incomplete_run(cancer_run, tmp_path)
    refused(call(capsys, *train(tmp_path / "runs", "--resume", run)), "config.json")


def test_predict_of_a_run_with_an_incomplete_config(capsys, tmp_path, digits_run):
    run = incomplete_run(digits_run, tmp_path)
    image = write_png(tmp_path / "x.png", 0)
    refused(call(capsys, "predict", run, image), "config.json")


# ---------------------------------------------------------------- NaN loss

NAN_ARGS = ["--data", "breast-cancer", "--optimizer", "sgd", "--lr", "1e30", "--epochs", 1]


def nan_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_nan_loss_stops_with_epoch_and_step(capsys, tmp_path):
    runs = tmp_path / "runs"
    rc, out, err = call(capsys, *train(runs, *NAN_ARGS))
    assert "Traceback" not in out + err
    assert rc == 2, err
    line = nan_error(err)
    assert re.search(r"epoch 1, step \d+", line), line
    assert "no checkpoint had been written yet" in line
    assert "--lr" in line
    assert no_run_folder(runs)  # nothing good was saved in epoch 1: nothing left


def test_nan_loss_is_one_line_on_stderr(capsys, tmp_path):
    runs = tmp_path / "runs"
    refused(call(capsys, *train(runs, *NAN_ARGS)), "epoch 1", runs=runs)


@pytest.fixture
def resumed_into_nan(capsys, tmp_path, cancer_run):
    """Resume the 2-epoch run for a third epoch at lr 1e30: NaN after a good checkpoint."""
    run = copy_run(cancer_run, tmp_path)
    before = snapshot(run)
    result = call(capsys, *train(tmp_path / "runs", "--resume", run, "--allow-changes",
                                 "--epochs", 3, "--lr", "1e30"))
    return run, before, result


def test_nan_loss_after_a_checkpoint_keeps_it(resumed_into_nan):
    run, before, (rc, out, err) = resumed_into_nan
    assert "Traceback" not in out + err
    assert rc == 2, err
    line = nan_error(err)
    assert re.search(r"epoch 3, step \d+", line), line
    assert "last good checkpoint is kept" in line
    after = snapshot(run)
    for name in ("state.safetensors", "model.safetensors", "state.json", "history.csv"):
        assert after[name] == before[name], name
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


def test_nan_loss_after_resume_leaves_the_config_as_it_was(resumed_into_nan):
    run, before, (rc, _, _) = resumed_into_nan
    assert rc == 2
    assert (run / "config.json").read_bytes() == before["config.json"]


def test_nan_loss_after_resume_keeps_the_finished_runs_results(resumed_into_nan):
    run, before, (rc, _, _) = resumed_into_nan
    assert rc == 2
    after = snapshot(run)
    kept = [name for name in DERIVED_AT_THE_END if name in before]
    assert "metrics.json" in kept  # the scores of the run as it was, which is what is on disk
    for name in kept:
        assert after.get(name) == before[name], name


@pytest.mark.parametrize("error, shown", [
    (RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate "
                  "memory: you tried to allocate 33599999999664 bytes."), True),
    (MemoryError(), True),
    (RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB"), True),
    (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), False)])
def test_running_out_of_memory_is_one_line_and_other_bugs_are_not_hidden(capsys, monkeypatch,
                                                                       error, shown):
    from deepnotes.cli import summary

    def fails(args):
        raise error

    monkeypatch.setattr(summary, "run", fails)
    if not shown:  # a bug stays a traceback, for its report
        with pytest.raises(RuntimeError, match="mat1"):
            call(capsys, "summary", "lenet5")
        return
    rc, out, err = call(capsys, "summary", "lenet5")
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: out of memory (") and "--batch-size" in err

