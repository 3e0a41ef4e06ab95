"""Training strategy: the diagnosis arithmetic against hand-computed gaps, the train-dev split,
``deepnotes diagnose`` and ``deepnotes errors`` on a real (one-epoch) run."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import run_cli_quietly
from deepnotes.data import stratified_split
from deepnotes.data.splits import hold_out_train_dev
from deepnotes.errors import DeepnotesError
from deepnotes.strategy import (
    diagnose,
    diagnose_run,
    errors_from_metrics,
    parse_human_error,
    run_errors,
)

# ---------------------------------------------------------------- the arithmetic


def test_gaps_with_a_train_dev_split_by_hand():
    d = diagnose({"train": 0.08, "train_dev": 0.10, "dev": 0.15, "test": 0.16}, human_error=0.01)
    assert d.gaps == pytest.approx({"avoidable_bias": 0.07, "variance": 0.02,
                                    "data_mismatch": 0.05, "dev_overfitting": 0.01}, abs=1e-12)
    assert d.largest == "avoidable_bias"
    assert d.actions[:2] == ["train a bigger network", "train longer"]
    assert any("optimisation" in a for a in d.actions)
    assert list(d.errors) == ["train", "train_dev", "dev", "test"]


@pytest.mark.parametrize("errors, human, largest, value, needles", [
    # variance: train-dev much worse than train
    ({"train": 0.01, "train_dev": 0.11, "dev": 0.12, "test": 0.12}, 0.005, "variance", 0.10,
     ["more training data", "regularisation"]),
    # data mismatch: dev much worse than train-dev
    ({"train": 0.02, "train_dev": 0.03, "dev": 0.20, "test": 0.21}, 0.01, "data_mismatch", 0.17,
     ["error analysis", "more like dev"]),
    # overfitting to dev: test much worse than dev
    ({"train": 0.02, "train_dev": 0.025, "dev": 0.03, "test": 0.10}, 0.015, "dev_overfitting",
     0.07, ["bigger dev set"]),
    # avoidable bias, human error far from 0
    ({"train": 0.30, "train_dev": 0.31, "dev": 0.32, "test": 0.33}, 0.10, "avoidable_bias", 0.20,
     ["bigger network", "train longer"]),
])
def test_the_largest_gap_and_its_actions(errors, human, largest, value, needles):
    d = diagnose(errors, human)
    assert d.largest == largest
    assert d.gaps[largest] == pytest.approx(value, abs=1e-12)
    assert all(d.gaps[largest] >= v for v in d.gaps.values())
    for needle in needles:
        assert any(needle in action for action in d.actions), (needle, d.actions)


def test_without_train_dev_variance_is_dev_minus_train_and_mismatch_is_not_computed():
    d = diagnose({"train": 0.05, "dev": 0.12, "test": 0.11})
    assert d.gaps == pytest.approx({"avoidable_bias": 0.05, "variance": 0.07,
                                    "dev_overfitting": -0.01}, abs=1e-12)
    assert "data_mismatch" not in d.gaps
    assert d.largest == "variance" and d.formula("variance") == "dev - train"
    assert any("no train-dev split" in note for note in d.notes)
    assert any("proxy for Bayes error" in note for note in d.notes)  # human error 0 by default


@pytest.mark.parametrize("errors, missing", [
    ({"dev": 0.1}, "train, test"),
    ({"train": 0.1, "train_dev": 0.1, "dev": 0.1}, "test"),
])
def test_missing_splits_are_named(errors, missing):
    with pytest.raises(DeepnotesError, match=f"the {missing} split"):
        diagnose(errors)
    metrics = {name: {"accuracy": 1 - e} for name, e in errors.items()}
    with pytest.raises(DeepnotesError, match=f"missing the {missing} split"):
        errors_from_metrics(metrics, "m.json")


def test_errors_from_metrics_are_one_minus_accuracy():
    metrics = {"train": {"accuracy": 0.9}, "dev": {"accuracy": 0.75}, "test": {"accuracy": 0.8},
               "train_dev": {"accuracy": 0.85}}
    assert errors_from_metrics(metrics) == pytest.approx(
        {"train": 0.1, "train_dev": 0.15, "dev": 0.25, "test": 0.2}, abs=1e-12)
    with pytest.raises(DeepnotesError, match="split dev has no accuracy"):
        errors_from_metrics({**metrics, "dev": {"loss": 1.0}})


@pytest.mark.parametrize("text, value", [("0.01", 0.01), ("1%", 0.01), ("2.5 %", 0.025),
                                         ("0", 0.0), ("0.999", 0.999)])
def test_human_error_as_a_fraction_or_a_percent(text, value):
    assert parse_human_error(text) == pytest.approx(value, abs=1e-12)


@pytest.mark.parametrize("text", ["1", "100%", "-0.01", "-1%", "abc", "nan", "inf", "%"])
def test_human_error_outside_0_1_is_refused(text):
    with pytest.raises(DeepnotesError, match=f"--human-error {text}: .*\\[0, 1\\)"):
        parse_human_error(text)


# ---------------------------------------------------------------- the train-dev split


def test_train_dev_is_cut_from_the_training_pool_stratified_and_seeded():
    y = torch.cat([torch.full((n,), c) for c, n in enumerate([300, 200, 100])])
    base = stratified_split(y, seed=1)
    s = hold_out_train_dev(y, base, 0.1, seed=1)
    assert torch.equal(s.dev, base.dev) and torch.equal(s.test, base.test)
    assert sorted(torch.cat([s.train, s.train_dev]).tolist()) == base.train.tolist()
    assert torch.bincount(y[s.train_dev]).tolist() == [24, 16, 8]  # 10% of 240, 160, 80
    assert s.sizes() == {"train": 432, "train_dev": 48, "dev": 60, "test": 60}
    assert torch.equal(hold_out_train_dev(y, base, 0.1, seed=1).train_dev, s.train_dev)
    assert not torch.equal(hold_out_train_dev(y, base, 0.1, seed=2).train_dev, s.train_dev)
    assert hold_out_train_dev(y, base, 0.0).train_dev is None


# ---------------------------------------------------------------- the CLI on a real run


call = run_cli_quietly  # usable in module-scoped fixtures


def refused(result, *needles) -> None:
    rc, out, err = result
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning")]
    assert rc == 2 and "Traceback" not in err and len(lines) == 1, (rc, err)
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


TRAIN = ["train", "--data", "digits", "--epochs", "1", "--quiet"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    rc, _, err = call(*TRAIN, "--train-dev", "0.1", "--out", out, "--name", "td")
    assert rc == 0, err
    return out / "td"


def test_train_dev_run_holds_a_disjoint_split_of_the_right_size(run):
    from deepnotes.runs.build import build_data
    from deepnotes.runs.config import read_config

    config = read_config(run)
    assert config.train_dev == 0.1
    dataset, splits = build_data(config)
    pool = stratified_split(dataset.y, config.fractions, config.seed).train
    want = sum(round(int(n) * 0.1) for n in torch.bincount(dataset.y[pool]))
    assert len(splits.train_dev) == want > 0
    sets = {name: set(getattr(splits, name).tolist()) for name in splits.names()}
    assert sets["train"] | sets["train_dev"] == set(pool.tolist())
    for a in sets:
        for b in sets:
            assert a == b or not sets[a] & sets[b], (a, b)
    assert config.splits == {name: len(s) for name, s in sets.items()}
    metrics = json.loads((run / "metrics.json").read_text())
    assert list(metrics) == ["train", "train_dev", "dev", "test", "best"]  # and the kept epoch
    assert sum(row["support"] for row in metrics["train_dev"]["per_class"]) == want


def test_diagnose_on_the_run(run):
    metrics = json.loads((run / "metrics.json").read_text())
    e = {name: 1 - m["accuracy"] for name, m in metrics.items() if name != "best"}
    rc, out, err = call("diagnose", run, "--human-error", "2%", "--json")
    assert rc == 0, err
    got = json.loads(out)
    assert got["gaps"] == pytest.approx({
        "avoidable_bias": e["train"] - 0.02, "variance": e["train_dev"] - e["train"],
        "data_mismatch": e["dev"] - e["train_dev"], "dev_overfitting": e["test"] - e["dev"]},
        abs=1e-12)
    assert got["largest"] == max(got["gaps"], key=got["gaps"].get)
    assert diagnose_run(run, 0.02).gaps == pytest.approx(got["gaps"], abs=1e-12)
    rc, out, err = call("diagnose", run)
    assert rc == 0, err
    for needle in ("avoidable bias", "variance", "data mismatch", "overfitting to dev",
                   "largest gap", "proxy"):
        assert needle in out, needle
    assert f"{e['train_dev']:.4f}" in out


def test_diagnose_refuses_bad_input(run, tmp_path):
    refused(call("diagnose", run, "--human-error", "150%"), "--human-error 150%", "[0, 1)")
    refused(call("diagnose", tmp_path), str(tmp_path), "metrics.json")
    partial = tmp_path / "partial"
    shutil.copytree(run, partial)
    metrics = json.loads((partial / "metrics.json").read_text())
    del metrics["test"], metrics["train"]
    (partial / "metrics.json").write_text(json.dumps(metrics))
    refused(call("diagnose", partial), "missing the train, test split")
    with pytest.raises(DeepnotesError, match="train, test"):
        run_errors(partial)


def predictions(run: Path, split: str = "dev"):
    """(data-set indices, true labels, predicted labels, confidences) of the run's model."""
    from deepnotes.runs.build import batches, build_data
    from deepnotes.runs.config import read_config
    from deepnotes.runs.folder import load_trained

    config = read_config(run)
    dataset, splits = build_data(config)
    model = load_trained(run, config)
    idx = getattr(splits, split)
    with torch.inference_mode():
        p = torch.cat([torch.softmax(model(x), 1) for x, _ in
                       batches(config, dataset, idx, "cpu").epoch()])
    conf, pred = p.max(1)
    return idx, dataset.y[idx], pred, conf


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_errors_writes_the_most_confident_mistakes(run, tmp_path):
    idx, y, pred, conf = predictions(run)
    wrong = {int(idx[i]): (int(y[i]), int(pred[i]), float(conf[i])) for i in
             (pred != y).nonzero().flatten()}
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(wrong) == round((1 - metrics["dev"]["accuracy"]) * len(idx))
    assert len(wrong) > 5  # one epoch: enough mistakes for --n to cut

    rc, out, err = call("errors", run, "--n", "5", "--out", tmp_path / "e")
    assert rc == 0, err
    assert (tmp_path / "e/errors.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = read_rows(tmp_path / "e/errors.csv")
    assert len(rows) == 5
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4, 5]
    confidences = [float(r["confidence"]) for r in rows]
    assert confidences == sorted(confidences, reverse=True)
    assert min(confidences) >= sorted((c for *_, c in wrong.values()), reverse=True)[4] - 1e-6
    classes = json.loads((run / "config.json").read_text())["classes"]
    for r in rows:
        true, predicted, confidence = wrong[int(r["index"])]  # a mistake of the model's
        assert (r["true_label"], r["predicted_label"]) == (classes[true], classes[predicted])
        assert r["true_label"] != r["predicted_label"]
        assert float(r["confidence"]) == pytest.approx(confidence, abs=1e-5)

    rc, out, err = call("errors", run)  # default: into the run folder, up to 100
    assert rc == 0, err
    assert len(read_rows(run / "errors.csv")) == min(100, len(wrong))
    assert (run / "errors.png").is_file()


def test_errors_on_a_table_run_writes_csv_only(tmp_path):
    rc, _, err = call("train", "--data", "breast-cancer", "--epochs", "1", "--quiet", "--out",
                      tmp_path, "--name", "t")
    assert rc == 0, err
    rc, out, err = call("errors", tmp_path / "t", "--n", "3")
    assert rc == 0, err
    assert "no contact sheet" in out
    assert not (tmp_path / "t/errors.png").exists()
    rows = read_rows(tmp_path / "t/errors.csv")
    assert 0 < len(rows) <= 3 and all(r["true_label"] != r["predicted_label"] for r in rows)
    refused(call("errors", tmp_path / "t", "--split", "train_dev"), "--split train_dev")
    refused(call("errors", tmp_path / "t", "--n", "0"), "--n 0")
    refused(call("evaluate", tmp_path / "t", "--split", "train_dev"), "no train-dev split")


@pytest.mark.parametrize("value", ["1", "-0.1", "nan"])
def test_train_dev_fraction_is_validated(tmp_path, value):
    refused(call(*TRAIN, "--train-dev", value, "--out", tmp_path), "--train-dev", "[0, 1)")
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_train_dev_too_small_to_hold_anything_is_refused(tmp_path):
    refused(call(*TRAIN, "--train-dev", "0.0001", "--out", tmp_path), "--train-dev 0.0001")
    assert not any(tmp_path.iterdir())


def test_old_runs_without_train_dev_still_load(run, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(run, old)
    config = json.loads((old / "config.json").read_text())
    del config["train_dev"]
    (old / "config.json").write_text(json.dumps(config))
    rc, out, err = call("evaluate", old, "--split", "dev", "--json")
    assert rc == 0, err
    assert list(json.loads(out)) == ["dev"]


@pytest.mark.slow
def test_resume_with_train_dev_is_bit_exact(tmp_path, monkeypatch):
    from deepnotes.train.trainer import Trainer

    args = [*TRAIN[:3], "--epochs", "2", "--train-dev", "0.1", "--quiet", "--out", tmp_path]
    assert call(*args, "--name", "ref")[0] == 0
    end_epoch = Trainer._end_epoch

    def stop_after_the_first(self, train, dev):
        end_epoch(self, train, dev)
        if self.state.epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_end_epoch", stop_after_the_first)
    assert call(*args, "--name", "r")[0] == 130
    monkeypatch.undo()
    assert not (tmp_path / "r/metrics.json").exists()
    rc, _, err = call("train", "--resume", tmp_path / "r", "--quiet")
    assert rc == 0, err
    for name in ("model.safetensors", "metrics.json"):
        assert (tmp_path / "r" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes()
    assert "train_dev" in json.loads((tmp_path / "r/metrics.json").read_text())


# ---------------------------------------------------------------- noise: the gaps' intervals


def test_variance_suggests_only_what_deepnotes_offers():
    from deepnotes.cli import build_parser

    d = diagnose({"train": 0.01, "train_dev": 0.11, "dev": 0.12, "test": 0.12}, 0.005)
    text = " ".join(d.actions)
    assert "dropout" not in text.lower()
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    options = {o for action in train._actions for o in action.option_strings}
    for option in ("--augment", "--weight-decay", "--early-stop", "--model"):
        assert option in text and option in options, option


def test_a_gaps_interval_by_hand():
    """variance = train-dev - train = 0.10 - 0.02 from 70 and 5,000 examples:
    SE = sqrt(0.10 x 0.90 / 70 + 0.02 x 0.98 / 5000) = sqrt(0.0012857 + 0.0000039) = 0.035912,
    so 0.08 +- 1.96 x 0.035912 = 0.08 +- 0.070387. Avoidable bias 0.02 - 0.01 has train's SE
    alone: sqrt(0.0196 / 5000) = 0.0019799, +- 0.0038806."""
    from deepnotes.strategy import gap_interval, standard_error

    assert standard_error(0.10, 70) == pytest.approx(0.0358569, abs=1e-6)
    errors = {"train": 0.02, "train_dev": 0.10, "dev": 0.12, "test": 0.12}
    sizes = {"train": 5000, "train_dev": 70, "dev": 1000, "test": 1000}
    low, high = gap_interval(0.08, errors, sizes, ("train_dev", "train"))
    assert (low, high) == pytest.approx((0.08 - 0.070387, 0.08 + 0.070387), abs=1e-6)
    d = diagnose(errors, 0.01, sizes)
    assert d.intervals["variance"] == pytest.approx((low, high), abs=1e-12)
    assert d.intervals["avoidable_bias"] == pytest.approx((0.01 - 0.0038806, 0.01 + 0.0038806),
                                                          abs=1e-6)
    assert d.intervals["dev_overfitting"] == pytest.approx(  # both 0.12 of 1,000: +- 0.028484
        (-0.028484, 0.028484), abs=1e-6)


@pytest.mark.parametrize("pa, na, pb, nb", [(0.10, 500, 0.05, 2000), (0.2, 300, 0.15, 300),
                                            (0.3, 1000, 0.1, 400)])
def test_the_95_percent_interval_covers_about_95_percent_of_simulated_differences(pa, na, pb,
                                                                                   nb):
    """Errors drawn as binomial counts of na and nb examples: the interval built from each draw
    covers the true difference pa - pb in about 95% of draws."""
    import numpy as np

    from deepnotes.strategy import gap_interval

    rng = np.random.default_rng(0)
    draws = 4000
    ea, eb = rng.binomial(na, pa, draws) / na, rng.binomial(nb, pb, draws) / nb
    covered = 0
    for a, b in zip(ea, eb):
        low, high = gap_interval(a - b, {"a": a, "b": b}, {"a": na, "b": nb}, ("a", "b"))
        covered += low <= pa - pb <= high
    assert covered / draws == pytest.approx(0.95, abs=0.015)  # binomial SE of 4,000: 0.0034


SMALL = {"train": 5000, "train_dev": 70, "dev": 1000, "test": 1000}
LARGE = {"train": 50000, "train_dev": 5000, "dev": 5000, "test": 5000}
ERRORS = {"train": 0.02, "train_dev": 0.10, "dev": 0.12, "test": 0.12}


def test_a_small_split_makes_the_ranking_uncertain_and_says_how_many_examples_settle_it():
    from deepnotes.strategy import examples_to_separate, gap_se

    d = diagnose(ERRORS, 0.01, SMALL)
    assert d.largest == "variance" and d.uncertain
    note = next(n for n in d.notes if "ranking" in n)
    assert "train-dev has only 70 examples" in note and "overlap" in note
    assert "data mismatch" in note  # the second gap, 0.02 (avoidable bias 0.01)
    n = examples_to_separate(d, "variance", "data_mismatch", ["train_dev", "train", "dev"])
    assert f"about {n:,} examples in train-dev" in note
    grown = {**SMALL, "train_dev": n}  # with that many, the intervals are apart
    se = [gap_se(ERRORS, grown, s) for s in (("train_dev", "train"), ("dev", "train_dev"))]
    assert 0.08 - 1.96 * se[0] > 0.02 + 1.96 * se[1]
    d_n = diagnose(ERRORS, 0.01, grown)
    assert not d_n.uncertain and not any("ranking" in note for note in d_n.notes)


def test_large_splits_give_a_clear_ranking():
    d = diagnose(ERRORS, 0.01, LARGE)
    assert d.largest == "variance" and not d.uncertain
    assert not any("ranking" in note for note in d.notes)
    assert d.intervals["variance"][0] > d.intervals["data_mismatch"][1]


def test_overlapping_intervals_of_large_splits_are_uncertain_too():
    d = diagnose({"train": 0.05, "train_dev": 0.08, "dev": 0.105, "test": 0.105}, 0.01,
                 {"train": 2000, "train_dev": 1000, "dev": 1000, "test": 1000})
    assert d.largest == "avoidable_bias" and d.uncertain  # 0.04 against variance 0.03
    note = next(n for n in d.notes if "ranking" in n)
    assert "only" not in note and "overlap" in note and "examples in train" in note


def test_sizes_are_checked():
    with pytest.raises(DeepnotesError, match="size of the train_dev split 0"):
        diagnose(ERRORS, 0.01, {**SMALL, "train_dev": 0})
    with pytest.raises(DeepnotesError, match="size of the test split None"):
        diagnose(ERRORS, 0.01, {k: v for k, v in SMALL.items() if k != "test"})


def write_metrics(folder: Path, errors: dict, sizes: dict) -> Path:
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps({
        name: {"accuracy": 1 - e, "per_class": [{"support": sizes[name] // 2},
                                                 {"support": sizes[name] - sizes[name] // 2}]}
        for name, e in errors.items()}))
    return folder


@pytest.mark.parametrize("sizes, uncertain", [(SMALL, True), (LARGE, False)])
def test_diagnose_prints_intervals_and_the_uncertainty_for_small_splits_only(tmp_path, sizes,
                                                                             uncertain):
    run = write_metrics(tmp_path / "r", ERRORS, sizes)
    rc, out, err = call("diagnose", run, "--human-error", "1%")
    assert rc == 0, err
    assert "95% interval" in out and "dropout" not in out
    assert ("the ranking of the gaps is uncertain" in out) == uncertain
    assert ("largest gap, uncertain" in out) == uncertain
    got = json.loads(call("diagnose", run, "--human-error", "1%", "--json")[1])
    assert got["sizes"] == sizes and got["uncertain"] == uncertain
    assert got["intervals"]["variance"][0] < 0.08 < got["intervals"]["variance"][1]


def test_a_metrics_file_without_sizes_is_diagnosed_without_intervals(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({k: {"accuracy": 1 - e}
                                                  for k, e in ERRORS.items()}))
    d = diagnose_run(run, 0.01)
    assert d.intervals == {} and not d.uncertain
    assert any("no split sizes" in note for note in d.notes)
