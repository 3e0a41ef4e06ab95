"""``deepnotes runs``: one row a run folder, its status, sorting, JSON, and the stopped.json marker
that ``deepnotes train`` leaves when a run diverges or is interrupted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import run_cli_quietly
from deepnotes.errors import LossDiverged
from deepnotes.models import create_model
from deepnotes.runs import training
from deepnotes.runs.config import MARKER, RunConfig
from deepnotes.runs.finetune import fit_finetune, prepare_finetune
from deepnotes.runs.session import prepare
from deepnotes.runs.table import COLUMNS, RunRow, format_table, list_runs, records, sort_rows
from deepnotes.train import Trainer, TrainingInterrupted

# ---------------------------------------------------------------- hand-made run folders


def make_run(root: Path, name: str, *, epochs: int = 3, seconds=(1.0, 2.0),
             dev=(0.8, 0.7), test=(0.75, 0.65), best: int | None = 2,
             finished: bool = True, stopped: str | None = None) -> Path:
    """A run folder as deepnotes train leaves it, without training: a valid config.json, a
    history.csv of ``len(seconds)`` epochs, metrics.json when ``finished`` ((accuracy, F1) of
    dev and test; best.epoch unless ``best`` is None), stopped.json when ``stopped``."""
    path = root / name
    path.mkdir(parents=True)
    RunConfig(model="mlp", data="breast-cancer", epochs=epochs, classes=["no", "yes"],
              in_channels=4, input_shape=[4], kind="table",
              normalize={"mean": [0.0] * 4, "std": [1.0] * 4, "scale": 1.0},
              **MARKER).write(path / "config.json")
    rows = [f"{i + 1},0.5,0.7,0.6,0.7,0.7,0.001,{s}" for i, s in enumerate(seconds)]
    (path / "history.csv").write_text("epoch,train_loss,train_accuracy,dev_loss,dev_accuracy,"
                                      "dev_f1,lr,seconds\n" + "\n".join(rows) + "\n")
    if finished:
        metrics = {split: {"accuracy": acc, "loss": 0.5, "f1": f1}
                   for split, (acc, f1) in (("dev", dev), ("test", test))}
        if best is not None:
            metrics["best"] = {"monitor": "dev_loss", "epoch": best, "value": 0.41}
        (path / "metrics.json").write_text(json.dumps(metrics))
    if stopped:
        (path / training.STOPPED).write_text(json.dumps({"reason": stopped, "message": "x"}))
    return path


def one_error_line(rc: int, err: str) -> str:
    assert rc == 2 and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_a_finished_run_is_one_row_with_its_scores(tmp_path):
    make_run(tmp_path, "a", seconds=(1.5, 2.25))
    (row,) = list_runs(tmp_path)
    assert row == RunRow(name="a", model="mlp", data="breast-cancer", epochs=2, asked=3, best=2,
                         dev_acc=0.8, dev_f1=0.7, test_acc=0.75, test_f1=0.65, seconds=3.75,
                         status="finished")


def test_no_best_key_is_a_missing_best_epoch(tmp_path):
    make_run(tmp_path, "a", best=None)
    (row,) = list_runs(tmp_path)
    assert row.best is None and row.status == "finished"
    assert format_table([row]).splitlines()[1].split()[COLUMNS.index("best")] == "-"


@pytest.mark.parametrize("stopped, status", [(None, "interrupted"), ("interrupted", "interrupted"),
                                             ("diverged", "diverged")])
def test_an_unfinished_run_is_interrupted_unless_stopped_json_says_diverged(tmp_path, stopped,
                                                                             status):
    make_run(tmp_path, "a", finished=False, stopped=stopped)
    (row,) = list_runs(tmp_path)
    assert row.status == status
    assert (row.epochs, row.asked, row.seconds) == (2, 3, 3.0)
    assert row.dev_acc is row.test_f1 is row.best is None


def test_a_run_killed_in_its_first_epoch_has_run_no_epochs(tmp_path):
    (make_run(tmp_path, "a", finished=False) / "history.csv").unlink()
    (row,) = list_runs(tmp_path)
    assert (row.status, row.epochs, row.seconds) == ("interrupted", 0, None)


@pytest.mark.parametrize("damage", ["config-not-json", "config-invalid", "metrics-not-json",
                                    "metrics-not-a-number"])
def test_a_damaged_run_is_a_row_not_a_crash(tmp_path, damage):
    run = make_run(tmp_path, "a")
    make_run(tmp_path, "b")
    if damage == "config-not-json":
        (run / "config.json").write_text('{"model": "mlp", "da')
    elif damage == "config-invalid":
        config = json.loads((run / "config.json").read_text())
        (run / "config.json").write_text(json.dumps({**config, "epochs": -1}))
    elif damage == "metrics-not-json":
        (run / "metrics.json").write_bytes(b"\xff\x00")
    else:
        (run / "metrics.json").write_text(json.dumps({"dev": {"accuracy": "high", "f1": 1}}))
    rows = list_runs(tmp_path)
    assert [(r.name, r.status) for r in rows] == [("a", "damaged"), ("b", "finished")]


def test_folders_deepnotes_did_not_make_are_left_out(tmp_path):
    make_run(tmp_path, "run")
    (tmp_path / "empty").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"name": "someone else\'s"}')
    (tmp_path / "a-list").mkdir()
    (tmp_path / "a-list" / "config.json").write_text("[1, 2]")
    (tmp_path / "notes.txt").write_text("not a folder")
    shutil.copytree(tmp_path / "run", tmp_path / ".run.replaced")  # --overwrite's backup
    assert [row.name for row in list_runs(tmp_path)] == ["run"]


def rows_for_sorting() -> list[RunRow]:
    return [RunRow("b", dev_acc=0.7, seconds=5.0), RunRow("a", dev_acc=None, seconds=1.0),
            RunRow("c", dev_acc=0.9, seconds=None), RunRow("d", dev_acc=0.7, seconds=3.0)]


@pytest.mark.parametrize("key, order", [("name", "abcd"), ("dev_acc", "cbda"),
                                        ("seconds", "adbc"), ("status", "abcd")])
def test_sorting_scores_highest_first_others_lowest_first_missing_last(key, order):
    assert "".join(r.name for r in sort_rows(rows_for_sorting(), key)) == order


def test_the_table_has_a_header_of_the_keys_and_one_aligned_line_a_row(tmp_path):
    make_run(tmp_path, "first-run")
    make_run(tmp_path, "b", finished=False, stopped="diverged")
    lines = format_table(list_runs(tmp_path)).splitlines()
    assert lines[0].split() == list(COLUMNS)
    assert lines[1].split() == ["b", "mlp", "breast-cancer", "2", "3", "-", "-", "-", "-", "-",
                                "3.0", "diverged"]
    assert lines[2].split()[:8] == ["first-run", "mlp", "breast-cancer", "2", "3", "2", "0.8000",
                                    "0.7000"]
    assert lines[1].index("breast-cancer") == lines[2].index("breast-cancer")  # aligned


def test_json_holds_the_rows_of_the_table_in_its_order(tmp_path, cli):
    make_run(tmp_path, "a", dev=(0.6, 0.5))
    make_run(tmp_path, "b", dev=(0.9, 0.8))
    make_run(tmp_path, "c", finished=False)
    rc, out, err = cli("runs", tmp_path, "--json", "--sort", "dev_f1")
    assert rc == 0, err
    listed = json.loads(out)
    assert listed == records(sort_rows(list_runs(tmp_path), "dev_f1"))
    assert [r["name"] for r in listed] == ["b", "a", "c"]
    assert all(list(r) == list(COLUMNS) for r in listed)
    assert listed[2]["dev_f1"] is None and listed[2]["status"] == "interrupted"
    rc, out, _ = cli("runs", tmp_path, "--sort", "dev_f1")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["b", "a", "c"]


def test_an_empty_folder_says_no_runs_were_found(tmp_path, cli):
    (tmp_path / "not-a-run").mkdir()
    rc, out, err = cli("runs", tmp_path)
    assert (rc, err) == (0, "")
    assert out.splitlines() == [f"no runs found under {tmp_path}"]
    assert json.loads(cli("runs", tmp_path, "--json")[1]) == []


def test_an_unknown_sort_key_is_one_line_naming_the_option_and_the_keys(tmp_path, cli):
    make_run(tmp_path, "a")
    line = one_error_line(*cli("runs", tmp_path, "--sort", "dev_accuracy")[::2])
    assert line.startswith("error: --sort: unknown column 'dev_accuracy'")
    assert "dev_acc" in line and "seconds" in line


@pytest.mark.parametrize("what", ["missing", "file"])
def test_a_folder_that_is_not_there_is_one_line_and_status_2(tmp_path, cli, what):
    folder = tmp_path / "runs"
    if what == "file":
        folder.write_text("x")
    line = one_error_line(*cli("runs", folder)[::2])
    assert line.startswith(f"error: {folder}: ")
    assert ("no such folder" if what == "missing" else "not a folder") in line


def test_damage_is_said_in_a_warning_and_the_listing_goes_on(tmp_path, cli):
    (make_run(tmp_path, "a") / "config.json").write_text("{")
    rc, out, err = cli("runs", tmp_path)
    assert rc == 0
    assert out.splitlines()[1].split()[-1] == "damaged"
    assert err.startswith("warning: damaged run folder: ") and "config.json" in err


def test_the_help_lists_the_sort_keys(cli):
    rc, out, _ = cli("runs", "--help")
    assert rc == 0 and all(key in " ".join(out.split()) for key in COLUMNS)


# ---------------------------------------------------------------- stopped.json

STOPS = [(LossDiverged("loss became nan"), "diverged"),
         (TrainingInterrupted("interrupted at"), "interrupted")]


def stopping_trainer(monkeypatch, error):
    """Trainer.fit that commits a checkpoint (so the folder is kept) and then stops."""
    def fit(self, train, dev):
        (self.run_dir / "state.safetensors").write_bytes(b"")
        raise error

    monkeypatch.setattr(Trainer, "fit", fit)


@pytest.mark.parametrize("error, reason", STOPS)
def test_a_run_that_stops_after_a_checkpoint_says_why(tmp_path, monkeypatch, error, reason):
    stopping_trainer(monkeypatch, error)
    with pytest.raises(type(error)):
        training.start({"data": "breast-cancer", "epochs": 2}, tmp_path, "r", False,
                       progress=False)
    stopped = json.loads((tmp_path / "r" / training.STOPPED).read_text())
    assert stopped == {"reason": reason, "message": str(error)}
    (row,) = list_runs(tmp_path)
    assert row.status == reason


@pytest.mark.parametrize("head_only", [False, True], ids=["fine-tuned", "head-on-cache"])
@pytest.mark.parametrize("error, reason", STOPS)
def test_a_finetune_run_that_stops_says_why(tmp_path, monkeypatch, error, reason, head_only):
    source = tmp_path / "source.safetensors"
    torch.manual_seed(0)
    save_file(create_model("mlp", num_classes=2, in_channels=30).state_dict(), source)
    config = RunConfig(data="breast-cancer", model="mlp", epochs=2)
    freeze = "all-but-head" if head_only else "none"
    session, _ = prepare_finetune(source, config, freeze_option=freeze, progress=False)
    stopping_trainer(monkeypatch, error)
    (tmp_path / "f").mkdir()
    with pytest.raises(type(error)):
        fit_finetune(session, tmp_path / "f", progress=False, cache_dir=tmp_path / "cache")
    assert session.config.transfer["feature_cache"] is head_only
    stopped = json.loads((tmp_path / "f" / training.STOPPED).read_text())
    assert stopped == {"reason": reason, "message": str(error)}


@pytest.mark.slow  # trains through the CLI
def test_a_compared_rule_that_diverges_says_so(tmp_path):
    rc, _, err = run_cli_quietly("compare-optimizers", "--data", "breast-cancer", "--epochs", 1,
                                 "--optimizers", "sgd,adam", "--lr", "sgd=1e30", "--quiet",
                                 "--out", tmp_path, "--name", "c")
    assert rc == 0, err
    stopped = json.loads((tmp_path / "c" / "sgd" / training.STOPPED).read_text())
    assert stopped["reason"] == "diverged" and "became" in stopped["message"]
    assert not (tmp_path / "c" / "adam" / training.STOPPED).exists()
    statuses = {row.name: row.status for row in list_runs(tmp_path / "c")}
    assert statuses == {"adam": "finished", "sgd": "diverged"}


def test_a_pruned_tune_trial_says_so(tmp_path, monkeypatch):
    optuna = pytest.importorskip("optuna")
    from deepnotes.runs import tune

    def prune_at_once(trial, best, epochs):  # the median rule, always against this trial
        def on_epoch(row):
            raise optuna.TrialPruned(f"pruned at epoch {row['epoch']}")
        return on_epoch

    monkeypatch.setattr(tune, "pruning_hook", prune_at_once)
    session = prepare(RunConfig(data="breast-cancer", model="mlp", epochs=2), progress=False)
    study = optuna.create_study(direction="maximize")
    settings = {"lr_range": [1e-5, 1.0], "beta_range": None, "coarse_share": 0.5,
                "optimizer": "sgd"}
    tune.run_trial(study, session, tmp_path, settings, 2)
    assert study.trials[0].state == optuna.trial.TrialState.PRUNED
    run_dir = tune.trial_dir(tmp_path, 0)
    assert json.loads((run_dir / training.STOPPED).read_text()) == {
        "reason": "pruned", "message": "pruned at epoch 1"}
    (row,) = list_runs(run_dir.parent)
    assert row.status == "pruned"


# ---------------------------------------------------------------- real runs


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A folder ``runs`` of two finished one-epoch runs, trained through the CLI."""
    out = tmp_path_factory.mktemp("listing") / "runs"
    for data in ("digits", "breast-cancer"):
        rc, _, err = run_cli_quietly("train", "--data", data, "--epochs", 1, "--out", out,
                                     "--name", data, "--quiet")
        assert rc == 0, err
    return out


@pytest.mark.slow
def test_real_runs_are_listed_with_their_metrics(trained, monkeypatch):
    rows = {row.name: row for row in list_runs(trained)}
    assert sorted(rows) == ["breast-cancer", "digits"]
    for name, row in rows.items():
        metrics = json.loads((trained / name / "metrics.json").read_text())
        seconds = [float(line.split(",")[-1])
                   for line in (trained / name / "history.csv").read_text().splitlines()[1:]]
        assert (row.data, row.epochs, row.asked, row.status) == (name, 1, 1, "finished")
        assert row.dev_acc == metrics["dev"]["accuracy"] and row.test_f1 == metrics["test"]["f1"]
        assert row.best == metrics.get("best", {}).get("epoch")
        assert row.seconds == pytest.approx(sum(seconds)) and row.seconds > 0
    assert rows["digits"].model == "lenet5" and rows["breast-cancer"].model == "mlp"
    monkeypatch.chdir(trained.parent)  # FOLDER defaults to runs
    rc, out, err = run_cli_quietly("runs")
    assert rc == 0, err
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["breast-cancer", "digits"]


@pytest.mark.slow
def test_a_diverged_resume_leaves_stopped_json_and_a_finished_one_removes_it(trained, tmp_path):
    run = Path(shutil.copytree(trained / "breast-cancer", tmp_path / "bc"))
    rc, _, err = run_cli_quietly("train", "--resume", run, "--allow-changes", "--epochs", 2,
                                 "--lr", "1e30", "--quiet")
    assert rc == 2, err
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    stopped = json.loads((run / training.STOPPED).read_text())
    assert stopped == {"reason": "diverged", "message": line.removeprefix("error: ")}
    assert "loss became" in stopped["message"] or "dev loss became" in stopped["message"]
    (row,) = list_runs(tmp_path)
    assert (row.name, row.status, row.epochs, row.asked) == ("bc", "diverged", 1, 1)
    assert row.dev_acc is not None and row.test_f1 is not None  # the finished run's scores

    rc, _, err = run_cli_quietly("train", "--resume", run, "--allow-changes", "--epochs", 2,
                                 "--quiet")
    assert rc == 0, err
    assert not (run / training.STOPPED).exists()
    (row,) = list_runs(tmp_path)
    assert (row.status, row.epochs, row.asked) == ("finished", 2, 2)


@pytest.mark.slow
def test_resuming_a_finished_run_recomputes_its_metrics_without_claiming_to_train(trained,
                                                                                   tmp_path):
    run = Path(shutil.copytree(trained / "digits", tmp_path / "d"))
    rc, _, err = run_cli_quietly("train", "--resume", run)  # not --quiet: the log lines
    assert rc == 0, err
    assert "finished all 1 epochs already; recomputing its metrics" in err
    assert "training lenet5" not in err
    rc, _, err = run_cli_quietly("train", "--resume", run, "--allow-changes", "--epochs", 2)
    assert rc == 0, err
    assert "training lenet5" in err  # an epoch left: it says so
