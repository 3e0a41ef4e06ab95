"""Training a finished run longer: ``deepnotes train --resume RUN --more-epochs K`` runs K more
epochs with the schedule started over for them (a warm restart), and says so."""

from __future__ import annotations

import csv
import json

import pytest

from conftest import run_cli_quietly


def history(run) -> list[dict]:
    with open(run / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-epoch run of an MLP on breast-cancer with the default one-cycle schedule."""
    out = tmp_path_factory.mktemp("longer")
    rc, _, err = run_cli_quietly("train", "--data", "breast-cancer", "--epochs", 2, "--quiet",
                                 "--out", out, "--name", "r")
    assert rc == 0, err
    return out / "r"


@pytest.mark.slow  # trains through the CLI
def test_more_epochs_restart_the_schedule_and_keep_the_history(finished, tmp_path):
    import shutil

    run = shutil.copytree(finished, tmp_path / "r")
    before = history(run)
    rc, _, err = run_cli_quietly("train", "--resume", run, "--more-epochs", 2)
    assert rc == 0, err
    assert "2 more epochs (3 to 4); the onecycle schedule starts over" in err
    rows = history(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert rows[:2] == before  # the first two epochs are history, untouched
    # the new cycle is as long as the first, so each of its epochs ends at the first's rates;
    # the old behaviour (one cycle over 4 epochs) would differ, and jump at epoch 3
    assert [r["lr"] for r in rows[2:]] == [r["lr"] for r in rows[:2]]
    assert json.loads((run / "config.json").read_text())["epochs"] == 4
    metrics = json.loads((run / "metrics.json").read_text())
    assert "test" in metrics and metrics["best"]["epoch"] in (1, 2, 3, 4)
    state = json.loads((run / "state.json").read_text())
    assert (state["epoch"], state["cycle_start"]) == (4, 2)
    rc, _, err = run_cli_quietly("train", "--resume", run)  # done again: nothing to train
    assert rc == 0 and "finished all 4 epochs already" in err


@pytest.mark.parametrize("args, message", [
    (["--more-epochs", "2"], "--more-epochs 2: needs --resume RUN"),
    (["--resume", "{run}", "--more-epochs", "0"], "--more-epochs 0: expected a count >= 1"),
    (["--resume", "{run}", "--more-epochs", "2", "--epochs", "4"],
     "--more-epochs and --epochs: give one"),
])
def test_bad_more_epochs_are_one_line(finished, args, message):
    args = [a.replace("{run}", str(finished)) for a in args]
    rc, _, err = run_cli_quietly("train", *args, "--quiet")
    assert rc == 2 and err.startswith("error: ") and message in err
    assert err.count("\n") == 1


@pytest.mark.slow  # trains through the CLI
def test_a_run_with_epochs_left_is_resumed_first(finished, tmp_path):
    import shutil

    run = shutil.copytree(finished, tmp_path / "r")
    config = json.loads((run / "config.json").read_text())
    config["epochs"] = 3  # as if it were stopped after 2 of 3 epochs
    (run / "config.json").write_text(json.dumps(config))
    (run / "metrics.json").unlink()
    rc, _, err = run_cli_quietly("train", "--resume", run, "--more-epochs", 1, "--quiet")
    assert rc == 2 and "has epochs left (2 of 3 run); --resume it without --more-epochs" in err
