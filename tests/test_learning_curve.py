"""`deepnotes learning-curve`: train and dev error against m, on nested subsets of the training
split, the same initial weights and the same dev set at every size.

The baseline is checked against scikit-learn's LogisticRegression fit here on the same rows; the
full-size point against `deepnotes train` with the same options. Small budgets: LeNet-5 on the
8x8 digits (shown at 32x32) for two epochs, the MLP on breast-cancer for two.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from conftest import run_cli, run_cli_quietly
from deepnotes.data import Normalizer, load_dataset, stratified_split
from deepnotes.errors import DeepnotesError
from deepnotes.runs.config import RunConfig
from deepnotes.runs.learning_curve import (
    BASELINE_COLUMNS,
    COLUMNS,
    FILES,
    LOGISTIC,
    check_baseline,
    curve_folder,
    epochs_for,
    logistic_errors,
    parse_sizes,
    resolve_sizes,
    subsets,
)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------- --sizes


@pytest.mark.parametrize("text, sizes", [
    ("0.1,0.3,1.0", [0.1, 0.3, 1.0]),
    ("100, 500", [100, 500]),
    ("1,1.0", [1, 1.0]),  # one example, and the whole pool
    ("0.5,+20,1e-1", [0.5, 20, 0.1]),
])
def test_sizes_parse_as_fractions_or_counts(text, sizes):
    parsed = parse_sizes(text)
    assert parsed == sizes
    assert [type(v) for v in parsed] == [type(v) for v in sizes]


@pytest.mark.parametrize("text, needle", [
    ("", "expected fractions"), ("0.1,,1.0", "expected fractions"),
    ("abc", "'abc' is not a number"), ("0.1,x", "'x' is not a number"),
    ("0", "at least 1"), ("-5", "at least 1"), ("0.0", "not a fraction in (0, 1]"),
    ("-0.1", "not a fraction"), ("1.5", "not a fraction"), ("1e3", "not a fraction"),
    ("nan", "not a fraction"), ("inf", "not a fraction"),
    ("0.1,0.1", "given twice"), ("10,10", "given twice"),
])
def test_bad_sizes_are_one_line_naming_the_option(text, needle):
    with pytest.raises(DeepnotesError) as info:
        parse_sizes(text)
    message = str(info.value)
    assert message.startswith(f"--sizes {text}:") and needle in message
    assert "\n" not in message


def test_sizes_resolve_to_sorted_counts_of_the_pool():
    assert resolve_sizes([1.0, 0.1, 0.3], 1000) == [100, 300, 1000]
    assert resolve_sizes([50, 0.5], 1439) == [50, 720]  # round(719.5) to even
    assert resolve_sizes([1, 1.0], 7) == [1, 7]


@pytest.mark.parametrize("sizes, pool, needle", [
    ([5000], 1439, "the training pool holds 1439"),
    ([0.0001], 1439, "is no example"),
    ([0.1, 144], 1439, "0.1 and 144 are both 144 examples"),
    ([], 10, "no size given"),
    ([0], 10, "at least 1"),
    ([True], 10, "not a number"),
])
def test_sizes_the_pool_cannot_hold_are_refused(sizes, pool, needle):
    with pytest.raises(DeepnotesError, match="^--sizes") as info:
        resolve_sizes(sizes, pool)
    assert needle in str(info.value)


def test_subsets_are_nested_inside_the_training_split():
    train = torch.randperm(5000, generator=torch.Generator().manual_seed(1))[:1200].sort().values
    counts = [12, 120, 600, 1200]
    parts = subsets(train, counts, seed=3)
    assert [len(p) for p in parts] == counts
    pool = set(train.tolist())
    for small, large in zip(parts, parts[1:]):
        assert set(small.tolist()) < set(large.tolist())
    for part in parts:
        assert set(part.tolist()) <= pool
        assert torch.equal(part, part.sort().values) and len(set(part.tolist())) == len(part)
    assert torch.equal(parts[-1], train)  # the largest size is the whole pool
    assert all(torch.equal(a, b) for a, b in zip(parts, subsets(train, counts, seed=3)))
    assert not torch.equal(parts[1], subsets(train, counts, seed=4)[1])


def test_the_budget_of_updates_scales_epochs_by_the_batches_an_epoch():
    # largest 1000, batch 64: 15 batches an epoch, 2 epochs = 30 updates
    assert epochs_for(1000, 1000, 2, 64, "updates") == 2
    assert epochs_for(320, 1000, 2, 64, "updates") == 6  # 5 batches an epoch
    assert epochs_for(300, 1000, 2, 64, "updates") == 8  # 4 batches (the short one dropped)
    assert epochs_for(10, 1000, 2, 64, "updates") == 30  # one batch of 10 an epoch
    assert epochs_for(10, 1000, 2, 64, "epochs") == 2
    with pytest.raises(DeepnotesError, match="--budget steps"):
        epochs_for(10, 1000, 2, 64, "steps")


# ---------------------------------------------------------------- the baseline


@pytest.mark.parametrize("data", ["digits", "breast-cancer"])
def test_the_baseline_is_scikit_learns_logistic_regression_on_the_same_rows(data):
    dataset = load_dataset(data)  # digits at 8x8: 64 pixels
    splits = stratified_split(dataset.y, (0.8, 0.1, 0.1), seed=0)
    normalize = Normalizer.fit(dataset.x[splits.train]).to_dict()
    rows = subsets(splits.train, [60, len(splits.train)], seed=0)
    for train in rows:
        got = logistic_errors(dataset, normalize, train, splits.dev)
        # the reference, by hand: per-channel (x / 255 - mu) / sigma, flattened
        x = dataset.x.double() * (1 / 255 if dataset.kind == "image" else 1.0)
        dims, shape = ((0, 2, 3), (1, -1, 1, 1)) if x.dim() == 4 else ((0,), (1, -1))
        mu = x[splits.train].mean(dims).view(shape)
        sigma = x[splits.train].std(dims).view(shape)
        x = ((x - mu) / sigma).reshape(len(x), -1).float().numpy()  # what the network reads
        y = dataset.y.numpy()
        with threadpool_limits(1, user_api="blas"):
            model = LogisticRegression(**LOGISTIC).fit(x[train], y[train])
        train_error = 1 - np.mean(model.predict(x[train]) == y[train])
        dev_error = 1 - np.mean(model.predict(x[splits.dev]) == y[splits.dev])
        assert got == pytest.approx((train_error, dev_error), abs=1e-12)
    assert got[1] < 0.2  # a real classifier, not chance


def test_a_one_class_subset_gets_a_constant_baseline():
    dataset = load_dataset("breast-cancer")
    ones = (dataset.y == 1).nonzero().flatten()
    dev = torch.arange(len(dataset.y))[-50:]
    normalize = Normalizer.fit(dataset.x).to_dict()
    train_error, dev_error = logistic_errors(dataset, normalize, ones[:5], dev)
    assert train_error == 0 and dev_error == pytest.approx(float((dataset.y[dev] != 1).float()
                                                                  .mean()))


def test_the_baseline_reads_only_images_and_tables():
    tokens = load_dataset("dates:20")
    with pytest.raises(DeepnotesError, match="--baseline logistic: .*pairs data"):
        check_baseline("logistic", tokens, "dates:20")
    with pytest.raises(DeepnotesError, match="--baseline tree"):
        check_baseline("tree", load_dataset("digits"), "digits")
    check_baseline(None, tokens, "dates:20")


# ---------------------------------------------------------------- folders and bad input


def test_overwrite_replaces_a_learning_curve_and_nothing_else(tmp_path):
    config = RunConfig(model="mlp", data="breast-cancer")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(DeepnotesError, match="not a learning-curve folder"):
        curve_folder(tmp_path, "other", True, config)
    with pytest.raises(DeepnotesError, match="exists; use --overwrite"):
        curve_folder(tmp_path, "other", False, config)
    assert curve_folder(tmp_path, None, False, config).name == "curve-mlp-breast-cancer"
    (tmp_path / "curve").mkdir()
    (tmp_path / "curve" / "learning_curve.json").write_text("{}")
    assert curve_folder(tmp_path, "curve", True, config) == tmp_path / "curve"
    assert not (tmp_path / "curve" / "learning_curve.json").exists()


@pytest.mark.parametrize("args, needle", [
    (["--sizes", "5000"], "--sizes 5000: 5000 examples, but the training pool holds"),
    (["--sizes", "0.1,144"], "--sizes 0.1,144:"),
    (["--sizes", "two"], "--sizes two: 'two' is not a number"),
    (["--human-error", "2"], "--human-error 2:"),
])
def test_bad_options_are_one_line_and_leave_no_folder(tmp_path, capsys, args, needle):
    rc, out, err = run_cli(capsys, "learning-curve", *args, "--epochs", 1, "--out", tmp_path,
                           "--quiet")
    assert rc == 2 and out == ""
    assert err.startswith("error: ") and needle in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_a_baseline_on_sequences_is_refused(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "learning-curve", "--data", "dates:40", "--baseline",
                         "logistic", "--out", tmp_path, "--quiet")
    assert rc == 2 and err.count("\n") == 1
    assert "--baseline logistic:" in err and "image or table data" in err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def digits_curve(tmp_path_factory):
    """LeNet-5 on digits at three sizes with the baseline and a human error: (folder, stdout)."""
    out = tmp_path_factory.mktemp("curve")
    rc, stdout, stderr = run_cli_quietly(
        "learning-curve", "--data", "digits", "--epochs", 2, "--sizes", "0.1,0.3,1.0",
        "--human-error", "1%", "--baseline", "logistic", "--out", out, "--quiet")
    assert rc == 0, stderr
    return out / "curve-lenet5-digits", stdout


@pytest.mark.slow
def test_digits_curve_writes_its_table_json_and_plot(digits_curve):
    run_dir, stdout = digits_curve
    for name in FILES:
        assert (run_dir / name).stat().st_size > 0, name
    rows = read_csv(run_dir / "learning_curve.csv")
    assert list(rows[0]) == COLUMNS + BASELINE_COLUMNS
    report = json.loads((run_dir / "learning_curve.json").read_text())
    pool = report["pool"]
    assert [int(r["m"]) for r in rows] == [round(0.1 * pool), round(0.3 * pool), pool]
    assert report["human_error"] == 0.01 and report["baseline"] == "logistic"
    assert report["budget"] == "updates" and report["config"]["epochs"] == 2
    assert "train error" in stdout and "run folder:" in stdout
    assert not list(run_dir.rglob(".*tmp*")), "temporary files left behind"


@pytest.mark.slow
def test_digits_curve_has_a_complete_run_per_size_on_one_dev_set(digits_curve):
    run_dir, _ = digits_curve
    rows = read_csv(run_dir / "learning_curve.csv")
    dev_counts, test_counts = set(), set()
    for row in rows:
        sub = run_dir / f"m-{row['m']}"
        for file in ("config.json", "metrics.json", "model.safetensors", "history.csv"):
            assert (sub / file).stat().st_size > 0, f"{sub.name}/{file}"
        config = json.loads((sub / "config.json").read_text())
        metrics = json.loads((sub / "metrics.json").read_text())
        assert config["splits"]["train"] == int(row["m"])
        assert sum(map(sum, metrics["train"]["confusion_matrix"])) == int(row["m"])
        dev_counts.add(sum(map(sum, metrics["dev"]["confusion_matrix"])))
        test_counts.add(config["splits"]["test"])
        assert float(row["train_error"]) == pytest.approx(1 - metrics["train"]["accuracy"])
        assert float(row["dev_error"]) == pytest.approx(1 - metrics["dev"]["accuracy"])
        for key in BASELINE_COLUMNS:
            assert 0 <= float(row[key]) <= 1
    assert len(dev_counts) == 1 and len(test_counts) == 1  # the same dev set at every size
    smallest = rows[0]
    assert float(smallest["train_error"]) <= float(smallest["dev_error"])
    assert float(rows[-1]["dev_error"]) < 0.5  # it learned something in two epochs


@pytest.mark.slow
def test_a_size_run_rebuilds_its_subset_for_evaluate(digits_curve):
    """A size's run folder keeps m (train_examples), so deepnotes evaluate --split train scores
    the m examples it trained on, as the curve did, not the whole training split."""
    run_dir, _ = digits_curve
    row = read_csv(run_dir / "learning_curve.csv")[0]
    sub = run_dir / f"m-{row['m']}"
    assert json.loads((sub / "config.json").read_text())["train_examples"] == int(row["m"])
    rc, out, err = run_cli_quietly("evaluate", sub, "--split", "train", "--json")
    assert rc == 0, err
    train = json.loads(out)["train"]
    assert sum(map(sum, train["confusion_matrix"])) == int(row["m"])
    assert 1 - train["accuracy"] == pytest.approx(float(row["train_error"]))


@pytest.mark.slow
def test_table_curve_at_full_size_is_deepnotes_train(tmp_path):
    options = ["--data", "breast-cancer", "--epochs", 2, "--out", tmp_path, "--quiet"]
    rc, _, err = run_cli_quietly("learning-curve", *options, "--sizes", "0.25,1.0",
                                 "--baseline", "logistic", "--name", "curve")
    assert rc == 0, err
    rc, _, err = run_cli_quietly("train", *options, "--name", "whole")
    assert rc == 0, err
    rows = read_csv(tmp_path / "curve" / "learning_curve.csv")
    assert list(rows[0]) == COLUMNS + BASELINE_COLUMNS and len(rows) == 2
    pool = json.loads((tmp_path / "curve" / "learning_curve.json").read_text())["pool"]
    assert int(rows[-1]["m"]) == pool
    curve = json.loads((tmp_path / "curve" / f"m-{pool}" / "metrics.json").read_text())
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    for split in ("train", "dev", "test"):  # the same data, initial weights and batches
        assert curve[split]["accuracy"] == whole[split]["accuracy"], split
        assert curve[split]["loss"] == pytest.approx(whole[split]["loss"], rel=1e-6), split
    assert (tmp_path / "curve" / "learning_curve.png").stat().st_size > 0
