"""``deepnotes tune``: random search on a log scale, coarse to fine, resumable and shareable.

The notes: sample alpha on a log scale (r uniform, alpha = 10^r) and beta through 1 - beta on a
log scale (beta = 1 - 10^r); random values, not a grid; coarse first, then fine around the best.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from optuna.distributions import FloatDistribution, IntDistribution  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from conftest import spawn  # noqa: E402
from deepnotes.cli import main  # noqa: E402
from deepnotes.runs import tune as search  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)

TABLE = ["--data", "breast-cancer", "--model", "mlp", "--epochs", "1", "--quiet"]
SETTINGS = {"lr_range": [1e-5, 1.0], "beta_range": [0.9, 0.999], "coarse_share": 0.5,
            "optimizer": "adam"}


def rows(tune_dir: Path) -> list[dict]:
    with open(tune_dir / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


def load(tune_dir: Path) -> optuna.Study:
    return optuna.load_study(study_name=search.STUDY,
                             storage=f"sqlite:///{(tune_dir / 'study.db').resolve()}")


def tune_args(out: Path, name: str, trials: int, *extra) -> list[str]:
    return ["tune", *TABLE, "--out", str(out), "--name", name, "--trials", str(trials), *extra]


# ---------------------------------------------------------------- the sampler


def sample(sampler, number: int, name: str, dist):
    return sampler.sample_independent(None, SimpleNamespace(number=number), name, dist)


def test_sampler_depends_only_on_seed_trial_number_and_name():
    dist = FloatDistribution(1e-5, 1.0, log=True)
    a, b = search.TrialRandomSampler(seed=3), search.TrialRandomSampler(seed=3)
    assert [sample(a, n, "lr", dist) for n in range(5)] == [sample(b, n, "lr", dist)
                                                            for n in range(5)]
    assert len({sample(a, n, "lr", dist) for n in range(20)}) == 20  # trials differ
    assert sample(a, 0, "lr", dist) != sample(search.TrialRandomSampler(seed=4), 0, "lr", dist)
    assert sample(a, 0, "lr", dist) != sample(a, 0, "one_minus_beta", dist)


def test_sampler_is_the_same_through_optuna_in_any_order():
    """Trial 2 gets the same alpha whether or not trials 0 and 1 ran before it in this process."""
    first = optuna.create_study(sampler=search.TrialRandomSampler(seed=0))
    values = [first.ask().suggest_float("lr", 1e-5, 1.0, log=True) for _ in range(3)]
    dist = FloatDistribution(1e-5, 1.0, log=True)
    assert values == [sample(search.TrialRandomSampler(seed=0), n, "lr", dist) for n in range(3)]


def test_log_distributions_are_sampled_uniformly_in_log10():
    """alpha in [1e-5, 1]: each decade gets a fifth of the draws, not 90% in the last one."""
    sampler, dist = search.TrialRandomSampler(seed=0), FloatDistribution(1e-5, 1.0, log=True)
    draws = np.array([sample(sampler, n, "lr", dist) for n in range(4000)])
    assert draws.min() >= 1e-5 and draws.max() <= 1.0
    assert abs(np.log10(draws).mean() - (-2.5)) < 0.06
    assert abs((draws < 1e-3).mean() - 0.4) < 0.03
    linear = np.array([sample(sampler, n, "x", FloatDistribution(2.0, 4.0)) for n in range(2000)])
    assert 2.0 <= linear.min() and linear.max() <= 4.0 and abs(linear.mean() - 3.0) < 0.05
    ints = {sample(sampler, n, "k", IntDistribution(1, 3)) for n in range(100)}
    assert ints == {1, 2, 3}


def test_beta_is_sampled_through_one_minus_beta_on_a_log_scale():
    """beta in [0.9, 0.999]: r uniform in [-3, -1], beta = 1 - 10^r, so half the betas are above
    0.99 (a uniform beta would put a tenth there)."""
    low, high = search.full_ranges(SETTINGS)["one_minus_beta"]
    assert (low, high) == pytest.approx((0.001, 0.1))
    sampler, dist = search.TrialRandomSampler(seed=1), FloatDistribution(low, high, log=True)
    betas = 1 - np.array([sample(sampler, n, "one_minus_beta", dist) for n in range(4000)])
    assert betas.min() >= 0.9 - 1e-12 and betas.max() <= 0.999 + 1e-12
    assert abs((betas > 0.99).mean() - 0.5) < 0.03
    assert "one_minus_beta" not in search.full_ranges({**SETTINGS, "beta_range": None})


# ---------------------------------------------------------------- coarse to fine


def add(study, number_of_params: dict, value=None, state=TrialState.COMPLETE, **attrs):
    study.add_trial(optuna.trial.create_trial(
        state=state, value=value, user_attrs=attrs, params=number_of_params,
        distributions={"lr": FloatDistribution(1e-5, 1.0, log=True),
                       "one_minus_beta": FloatDistribution(1e-3, 0.1, log=True)}))


def test_narrow_is_half_a_decade_either_side_clipped_to_the_range():
    assert search.narrow(1e-3, 1e-5, 1.0) == pytest.approx((1e-3 / 10 ** 0.5, 1e-3 * 10 ** 0.5))
    assert search.narrow(0.5, 1e-5, 1.0) == pytest.approx((0.5 / 10 ** 0.5, 1.0))
    assert search.coarse_trials(5, 0.5) == 3 and search.coarse_trials(4, 1.0) == 4


def test_search_ranges_coarse_then_fine_around_the_best_finished_trial():
    study = optuna.create_study(direction="maximize")
    assert search.search_ranges(study, 3, SETTINGS, 6) == ("coarse", search.full_ranges(SETTINGS),
                                                           None)
    assert search.search_ranges(study, 5, SETTINGS, 6)[0] == "coarse"  # nothing finished yet
    add(study, {"lr": 1e-2, "one_minus_beta": 0.01}, 0.8)
    add(study, {"lr": 1e-4, "one_minus_beta": 0.05}, 0.9)
    add(study, {"lr": 50e-2, "one_minus_beta": 0.002}, 0.0, diverged="loss became nan")
    add(study, {"lr": 1e-1, "one_minus_beta": 0.01}, state=TrialState.FAIL)
    phase, ranges, center = search.search_ranges(study, 4, SETTINGS, 8)
    assert (phase, center) == ("coarse", None)  # the 4th of ceil(0.5 * 8): failed ones don't count
    phase, ranges, center = search.search_ranges(study, 5, SETTINGS, 8)
    assert (phase, center) == ("fine", 1)
    assert ranges["lr"] == pytest.approx((1e-4 / 10 ** 0.5, 1e-4 * 10 ** 0.5))
    assert ranges["one_minus_beta"] == pytest.approx((0.05 / 10 ** 0.5, 0.1))
    # a diverged trial (objective 0) is never the centre, even as the only finished one
    only_diverged = optuna.create_study(direction="maximize")
    add(only_diverged, {"lr": 0.5, "one_minus_beta": 0.01}, 0.0, diverged="loss became inf")
    assert search.search_ranges(only_diverged, 9, SETTINGS, 4)[0] == "coarse"


# ---------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """A 4-trial tune of an MLP on breast-cancer (2 coarse, 2 fine)."""
    out = tmp_path_factory.mktemp("tune")
    assert main(tune_args(out, "t", 4)) == 0
    return out / "t"


@pytest.mark.slow
def test_tune_writes_the_study_trials_and_reports(tuned):
    for name in ("study.db", "tune.json", "trials.csv", "tune.png", "best.json"):
        assert (tuned / name).is_file(), name
    table = rows(tuned)
    assert [int(r["number"]) for r in table] == [0, 1, 2, 3]
    assert [r["phase"] for r in table] == ["coarse", "coarse", "fine", "fine"]
    assert all(r["state"] == "COMPLETE" for r in table)
    for r in table:
        config = json.loads((tuned / "trials" / f"{int(r['number']):04d}/config.json").read_text())
        assert config["lr"] == float(r["lr"]) and config["beta"] == float(r["beta"])
        assert config["optimizer"] == "adam" and config["trial"]["number"] == int(r["number"])
    best = json.loads((tuned / "best.json").read_text())
    assert best["dev_accuracy"] == max(float(r["dev_accuracy"]) for r in table)
    assert (Path(best["run_dir"]) / "metrics.json").is_file()
    assert Path(best["run_dir"]) == tuned / "trials" / f"{best['trial']:04d}"


@pytest.mark.slow
def test_fine_trials_lie_in_the_window_around_the_best_earlier_trial(tuned):
    study = load(tuned)
    trials = {t.number: t for t in study.trials}
    for t in trials.values():
        if t.user_attrs["phase"] != "fine":
            continue
        center = trials[t.user_attrs["center"]]
        earlier = [u for u in trials.values() if u.number < t.number and u.value is not None]
        assert center.value == max(u.value for u in earlier)
        for name in ("lr", "one_minus_beta"):
            low, high = center.params[name] / 10 ** 0.5, center.params[name] * 10 ** 0.5
            assert low * (1 - 1e-9) <= t.params[name] <= high * (1 + 1e-9)
        assert 0.9 <= t.user_attrs["beta"] <= 0.999


@pytest.mark.slow
def test_rerun_with_more_trials_continues_and_leaves_earlier_trials_alone(tuned, tmp_path, cli):
    tune_dir = tmp_path / "t"
    shutil.copytree(tuned, tune_dir)
    before = rows(tune_dir)
    stamp = (tune_dir / "trials/0000/metrics.json").stat().st_mtime_ns
    rc, out, err = cli("tune", "--out", tmp_path, "--name", "t", "--trials", 6, "--quiet")
    assert rc == 0, err
    after = rows(tune_dir)
    assert [int(r["number"]) for r in after] == list(range(6))
    keys = ("number", "state", "phase", "lr", "beta", "dev_accuracy")
    assert [{k: r[k] for k in keys} for r in after[:4]] == [{k: r[k] for k in keys}
                                                             for r in before]
    assert (tune_dir / "trials/0000/metrics.json").stat().st_mtime_ns == stamp
    assert f"run folder {tune_dir}/trials/" in out and "best: trial" in out
    rc, out, err = cli("tune", "--out", tmp_path, "--name", "t", "--trials", 6, "--quiet")
    assert rc == 0 and len(rows(tune_dir)) == 6  # already has 6: nothing more to do


@pytest.mark.parametrize("changed", [["--epochs", "2"], ["--lr-range", "1e-4,1"],
                                     ["--optimizer", "rmsprop"]])
@pytest.mark.slow
def test_rerun_with_different_options_is_refused(tuned, tmp_path, cli, changed):
    tune_dir = tmp_path / "t"
    shutil.copytree(tuned, tune_dir)
    rc, out, err = cli(*tune_args(tmp_path, "t", 6, *changed))
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: ")
    assert changed[0] in err
    assert len(rows(tune_dir)) == 4


@pytest.mark.slow
def test_diverging_alpha_does_not_stop_the_tune(tmp_path, cli):
    """alpha 1e4 and up: the loss becomes NaN; the trial scores 0 and the search goes on."""
    rc, out, err = cli(*tune_args(tmp_path, "nan", 3, "--optimizer", "sgd",
                                  "--lr-range", "1e-2,1e7"))
    assert rc == 0, err
    table = rows(tmp_path / "nan")
    assert len(table) == 3 and all(r["state"] == "COMPLETE" and r["beta"] == "" for r in table)
    bad = [r for r in table if "loss became" in r["note"]]
    good = [r for r in table if not r["note"]]
    assert bad and all(float(r["dev_accuracy"]) == 0 for r in bad)
    assert good, "with seed 0 one of the three alphas is small enough to train"
    for r in table:  # the trial folders say how each ended (deepnotes runs shows it)
        stopped = tmp_path / "nan" / "trials" / f"{int(r['number']):04d}" / "stopped.json"
        assert stopped.exists() == (r in bad)
        if r in bad:
            assert json.loads(stopped.read_text())["reason"] == "diverged"
    best = json.loads((tmp_path / "nan/best.json").read_text())
    assert best["trial"] in {int(r["number"]) for r in good} and best["beta"] is None


@pytest.mark.slow
def test_all_trials_diverging_is_a_warning_not_a_crash(tmp_path, cli):
    rc, out, err = cli(*tune_args(tmp_path, "nan", 2, "--optimizer", "sgd",
                                  "--lr-range", "1e6,1e7"))
    assert rc == 0, err
    assert "warning: no trial trained" in err and "lower --lr-range" in err
    assert len(rows(tmp_path / "nan")) == 2 and not (tmp_path / "nan/best.json").exists()


@pytest.mark.parametrize("bad, message", [
    (["--trials", "0"], "--trials 0"),
    (["--lr-range", "1,0.1"], "--lr-range"),
    (["--lr-range", "0,1"], "--lr-range"),
    (["--lr-range", "1e-3"], "--lr-range"),
    (["--beta-range", "0.9,1"], "--beta-range"),
    (["--beta-range", "0.99,0.9"], "--beta-range"),
    (["--coarse-share", "0"], "--coarse-share"),
    (["--coarse-share", "1.5"], "--coarse-share"),
    (["--optimizer", "adamw"], "did you mean 'adam'"),
    (["--optimizer", "sgd", "--beta-range", "0.9,0.99"], "sgd has no beta"),
    (["--epochs", "0"], "--epochs 0"),
    (["--data", "no-such-data"], "no-such-data"),
    (["--model", "lenet5"], "--model lenet5"),
])
def test_bad_input_is_one_line_and_leaves_no_folder(tmp_path, cli, bad, message):
    rc, out, err = cli(*tune_args(tmp_path / "runs", "x", 3, *bad))
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert not (tmp_path / "runs").exists()


def test_a_folder_that_is_not_a_tune_is_refused(tmp_path, cli):
    (tmp_path / "x").mkdir()
    (tmp_path / "x/config.json").write_text("{}")
    rc, out, err = cli(*tune_args(tmp_path, "x", 2))
    assert rc == 2 and "not a tune folder" in err and err.count("\n") == 1


def test_a_tune_folder_whose_tune_json_is_still_being_written_is_not_refused(tmp_path):
    """Two workers start one tune: the first has made the folder and is writing tune.json
    atomically (a hidden temporary file, then a rename); the second must not call the folder
    foreign (a CI run caught this race in test_two_processes_share_one_tune)."""
    from deepnotes.errors import DeepnotesError
    from deepnotes.runs.tune_settings import existing_tune

    (tmp_path / "p").mkdir()
    (tmp_path / "p" / ".tune.json.4242.tmp").write_text("{")
    assert existing_tune(str(tmp_path), "p") is None
    (tmp_path / "p" / "notes.txt").write_text("mine")
    with pytest.raises(DeepnotesError, match="not a tune folder"):
        existing_tune(str(tmp_path), "p")


def test_without_optuna_the_command_says_how_to_install_it(tmp_path, cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    rc, out, err = cli(*tune_args(tmp_path, "x", 2))
    assert rc == 2
    assert err == "error: deepnotes tune needs Optuna: pip install 'deepnotes[tune]'\n"
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------- several processes, Ctrl-C


def finish(proc, timeout=120) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


@pytest.mark.slow
def test_two_processes_share_one_tune(tmp_path):
    procs = [spawn(*tune_args(tmp_path, "p", 4)) for _ in range(2)]
    for proc in procs:
        rc, err = finish(proc)
        assert rc == 0, err
    study = load(tmp_path / "p")
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert 4 <= len(done) <= 5  # each process checks the count before a trial: one may overlap
    numbers = sorted(t.number for t in study.trials)
    assert numbers == list(range(len(numbers)))
    assert sorted(p.name for p in (tmp_path / "p/trials").iterdir()) == [f"{n:04d}"
                                                                          for n in numbers]


@pytest.mark.slow
def test_ctrl_c_discards_the_unfinished_trial_and_a_rerun_continues(tmp_path):
    args = ["tune", "--data", "breast-cancer", "--epochs", "8", "--batch-size", "2", "--quiet",
            "--out", tmp_path, "--name", "i", "--trials", "2"]
    proc = spawn(*args)
    state = tmp_path / "i/trials/0000/state.json"
    deadline = time.monotonic() + 120
    while not state.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    rc, err = finish(proc)
    assert rc == 130 and "run the same command to continue" in err
    assert [r["state"] for r in rows(tmp_path / "i")] == ["FAIL"]
    assert not (tmp_path / "i/trials/0000").exists()
    rc, err = finish(spawn(*args))
    assert rc == 0, err
    table = rows(tmp_path / "i")
    assert [(r["number"], r["state"]) for r in table] == [("0", "FAIL"), ("1", "COMPLETE"),
                                                          ("2", "COMPLETE")]
    assert table[1]["phase"] == "coarse"  # the interrupted trial is redone as a coarse one
    assert math.isfinite(float(table[2]["dev_accuracy"]))
