"""`deepnotes compare-optimizers`: four rules, one model, the same initial weights and batches.

Small budgets: the breast-cancer table with the MLP for two epochs, and LeNet-5 on the 8x8 digits
(shown at 32x32) for one epoch.
"""

from __future__ import annotations

import csv
import json

import pytest
import torch

from conftest import run_cli, run_cli_quietly
from deepnotes.errors import DeepnotesError
from deepnotes.models.weights import fingerprint as weights_fingerprint
from deepnotes.optim import DEFAULT_LRS, create_optimizer
from deepnotes.runs.build import build_model
from deepnotes.runs.compare import COLUMNS, compare_optimizers, is_comparison
from deepnotes.runs.config import RunConfig
from deepnotes.runs.rules import ORDER, Rule, learning_rates, parse_lrs, parse_rule, parse_rules

TABLE = ["--data", "breast-cancer", "--model", "mlp", "--epochs", 2, "--quiet"]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    """All four rules with their default alphas on breast-cancer: (folder, stdout)."""
    out = tmp_path_factory.mktemp("compare")
    rc, stdout, stderr = run_cli_quietly("compare-optimizers", *TABLE, "--out", out)
    assert rc == 0, stderr
    return out / "compare-mlp-breast-cancer", stdout


# ---------------------------------------------------------------- the CLI's run folder


@pytest.mark.slow
def test_each_rule_gets_a_complete_run_folder(table_run):
    run_dir, _ = table_run
    for name in ORDER:
        for file in ("config.json", "metrics.json", "model.safetensors", "history.csv",
                     "learning_curves.png"):
            assert (run_dir / name / file).stat().st_size > 0, f"{name}/{file}"
        config = json.loads((run_dir / name / "config.json").read_text())
        assert (config["optimizer"], config["lr"]) == (name, DEFAULT_LRS[name])
        assert config["epochs"] == 2 and config["model"] == "mlp"
        assert len(read_csv(run_dir / name / "history.csv")) == 2
    assert not list(run_dir.rglob(".*tmp*")), "temporary files left behind"


@pytest.mark.slow
def test_comparison_has_one_row_per_rule(table_run):
    run_dir, _ = table_run
    report = json.loads((run_dir / "comparison.json").read_text())
    rows = report["rows"]
    assert [r["optimizer"] for r in rows] == ORDER
    assert [r["lr"] for r in rows] == [DEFAULT_LRS[n] for n in ORDER]
    for row in rows:
        metrics = json.loads((run_dir / row["run"] / "metrics.json").read_text())
        assert row["dev_accuracy"] == pytest.approx(metrics["dev"]["accuracy"])
        assert row["dev_f1"] == pytest.approx(metrics["dev"]["f1"])
        assert row["best_dev_accuracy"] >= row["dev_accuracy"]
        assert row["seconds"] > 0
    best = max(r["dev_accuracy"] for r in rows)
    assert report["best"] == [r["optimizer"] for r in rows if r["dev_accuracy"] == best]
    assert report["config"]["model"] == "mlp" and report["config"]["epochs"] == 2
    table = read_csv(run_dir / "comparison.csv")
    assert list(table[0]) == COLUMNS
    assert [(r["optimizer"], float(r["lr"])) for r in table] == [(n, DEFAULT_LRS[n])
                                                                 for n in ORDER]


@pytest.mark.slow
def test_every_rule_starts_from_the_same_weights_and_batches(table_run):
    run_dir, _ = table_run
    rows = json.loads((run_dir / "comparison.json").read_text())["rows"]
    assert len({r["initial_weights_sha256"] for r in rows}) == 1
    steps = read_csv(run_dir / "step_losses.csv")
    assert len(steps) == 2 * (455 // 64)  # 2 epochs of full mini-batches of 455 examples
    first = [float(steps[0][n]) for n in ORDER]
    assert first == [first[0]] * 4  # the loss before any update: same weights, same batch
    last = [float(steps[-1][n]) for n in ORDER]
    assert len(set(last)) == 4  # four different rules, four different trajectories
    assert len({r["train_loss"] for r in rows}) == 4


@pytest.mark.slow
def test_loss_curves_is_a_png(table_run):
    run_dir, _ = table_run
    data = (run_dir / "loss_curves.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


@pytest.mark.slow
def test_the_printed_table_names_the_best(table_run):
    run_dir, out = table_run
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["optimizer", "alpha", "dev"]
    for name, line in zip(ORDER, lines[1:5]):
        assert line.split()[0] == name
        assert float(line.split()[1]) == DEFAULT_LRS[name]
    report = json.loads((run_dir / "comparison.json").read_text())
    assert lines[5].startswith(f"best dev accuracy: {', '.join(report['best'])} ")
    assert lines[6].startswith(f"run folder: {run_dir}")


@pytest.mark.slow
def test_a_sub_run_evaluates_like_any_run(table_run, capsys):
    run_dir, _ = table_run
    rc, out, err = run_cli(capsys, "evaluate", run_dir / "adam", "--json")
    assert rc == 0, err
    stored = json.loads((run_dir / "adam" / "metrics.json").read_text())
    assert json.loads(out)["test"]["accuracy"] == pytest.approx(stored["test"]["accuracy"])


@pytest.mark.slow
def test_a_rule_trains_exactly_as_deepnotes_train_does(table_run, tmp_path, cli):
    """Same seed, initial weights and batches: the adam sub-run is `train --optimizer adam`."""
    run_dir, _ = table_run
    rc, _, err = cli("train", *TABLE, "--optimizer", "adam", "--lr", DEFAULT_LRS["adam"],
                     "--out", tmp_path, "--name", "adam")
    assert rc == 0, err
    trained = read_csv(tmp_path / "adam" / "history.csv")
    compared = read_csv(run_dir / "adam" / "history.csv")
    for key in ("train_loss", "dev_loss", "dev_accuracy"):
        assert [float(r[key]) for r in compared] == pytest.approx([float(r[key])
                                                                   for r in trained])


# ---------------------------------------------------------------- the library, on images


@pytest.mark.slow
def test_library_trains_lenet_from_one_set_of_initial_weights(tmp_path, monkeypatch):
    """Record the weights each rule's model holds when training starts: all equal, and equal to the
    weights `deepnotes train` would start from with this seed."""
    import deepnotes.runs.compare as compare

    started = []
    real_fit = compare.fit

    def spy(sess, run_dir, **kwargs):
        started.append((sess.config.optimizer, type(sess.optimizer).__name__,
                        {k: v.clone() for k, v in sess.model.state_dict().items()}))
        return real_fit(sess, run_dir, **kwargs)

    monkeypatch.setattr(compare, "fit", spy)
    config = RunConfig(epochs=1, data="digits")
    rows = compare_optimizers(config, None, tmp_path / "cmp", lrs={"sgd": 0.05}, progress=False)

    assert [r["optimizer"] for r in rows] == ORDER == [name for name, _, _ in started]
    assert [r["lr"] for r in rows] == [0.05, *(DEFAULT_LRS[n] for n in ORDER[1:])]
    assert len({cls for _, cls, _ in started}) >= 3  # not one optimiser under four names
    assert config.model == "lenet5" and config.input_shape == [1, 32, 32]
    torch.manual_seed(config.seed)  # what prepare does before it builds the model
    reference = build_model(config).state_dict()
    for name, _, weights in started:
        assert weights.keys() == reference.keys()
        assert all(torch.equal(weights[k], reference[k]) for k in reference), name
    assert {r["initial_weights_sha256"] for r in rows} == {weights_fingerprint(reference)}
    for name in ORDER:
        assert (tmp_path / "cmp" / name / "metrics.json").exists()
    for file in ("comparison.json", "comparison.csv", "step_losses.csv", "loss_curves.png"):
        assert (tmp_path / "cmp" / file).stat().st_size > 0


def test_fingerprint_sees_every_value_and_takes_buffers():
    torch.manual_seed(0)
    layers = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    state = {k: v.clone() for k, v in layers.state_dict().items()}  # with a 0-d step counter
    assert weights_fingerprint(state) == weights_fingerprint(layers.state_dict())
    state["0.bias"][1] += 1e-6
    assert weights_fingerprint(state) != weights_fingerprint(layers.state_dict())


# ---------------------------------------------------------------- learning rates


@pytest.mark.parametrize("text, expected", [
    ("0.01", {n: 0.01 for n in ORDER}),
    ("sgd=0.05,adam=1e-3", {**DEFAULT_LRS, "sgd": 0.05, "adam": 1e-3}),
    ("0.02, adam=1e-3", {"sgd": 0.02, "momentum": 0.02, "rmsprop": 0.02, "adam": 1e-3}),
])
def test_lr_option(text, expected):
    assert learning_rates(ORDER, parse_lrs(text)) == expected


def test_default_lrs_are_the_rules_own():
    assert learning_rates(["adam", "sgd"]) == {"adam": DEFAULT_LRS["adam"],
                                               "sgd": DEFAULT_LRS["sgd"]}


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("args, words", [
    (["--optimizers", "sgd,adma"], ["unknown optimizer 'adma'", "did you mean 'adam'"]),
    (["--optimizers", "sgd,adam,sgd"], ["--optimizers", "sgd is listed twice"]),
    (["--optimizers", " , "], ["--optimizers", "no optimizer"]),
    (["--optimizers", "sgd,sgd+eps=0"], ["--optimizers sgd+eps=0", "sgd has no variant eps",
                                         "only rmsprop and adam", "eps-inside-sqrt"]),
    (["--optimizers", "rmsprop+no-bias-correction"], ["only adam has it"]),
    (["--optimizers", "adam+eps=small"], ["--optimizers adam+eps=small", "eps=small",
                                          "number >= 0"]),
    (["--optimizers", "adam+eps-inside"], ["unknown variant 'eps-inside'",
                                           "did you mean 'eps-inside-sqrt'"]),
    (["--optimizers", "adam+eps-inside-sqrt,adam+eps-inside-sqrt"],
     ["adam+eps-inside-sqrt is listed twice"]),
    (["--optimizers", "rmsprop", "--lr", "rmsprop+eps=0=1e-3"],
     ["--lr rmsprop+eps=0=0.001", "rmsprop+eps=0 is not among the compared optimizers (rmsprop)"]),
    (["--lr", "fast"], ["--lr fast", "NAME=ALPHA"]),
    (["--lr", "adam=x"], ["--lr adam=x"]),
    (["--lr", "=0.1"], ["no optimizer name"]),
    (["--lr", "-1"], ["--lr", "> 0"]),
    (["--lr", "sgd=0"], ["--lr sgd=0", "> 0"]),
    (["--lr", "adam=1e-3,adam=2e-3"], ["adam is given twice"]),
    (["--lr", "adamw=1e-3"], ["unknown optimizer 'adamw'"]),
    (["--optimizers", "sgd", "--lr", "adam=1e-3"], ["adam is not among the compared"]),
    (["--epochs", "0"], ["--epochs 0"]),
    (["--batch-size", "0"], ["--batch-size 0"]),
    (["--schedule", "often"], ["unknown schedule 'often'"]),
    (["--model", "lenet"], ["lenet"]),
])
def test_bad_input_is_one_line_and_leaves_no_folder(args, words, tmp_path, cli):
    rc, out, err = cli("compare-optimizers", "--data", "breast-cancer", "--epochs", 1, "--quiet",
                       *args, "--out", tmp_path / "runs")
    assert rc == 2, err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_diverging_rule_is_a_row_of_the_table_and_the_others_go_on(tmp_path, cli):
    rc, out, err = cli("compare-optimizers", *TABLE, "--optimizers", "sgd,adam", "--lr", "sgd=1e9",
                       "--schedule", "constant", "--out", tmp_path, "--name", "c")
    assert rc == 0, err
    assert "warning: optimizer sgd (alpha 1e+09): loss became" in err
    assert "sgd" in out and "diverged" in out and "best dev accuracy: adam" in out
    result = json.loads((tmp_path / "c" / "comparison.json").read_text())
    rows = {row["optimizer"]: row for row in result["rows"]}
    assert rows["sgd"]["dev_accuracy"] is None and "loss became" in rows["sgd"]["diverged"]
    assert rows["adam"]["dev_accuracy"] > 0.8 and result["best"] == ["adam"]
    assert (tmp_path / "c" / "adam" / "metrics.json").exists()
    assert (tmp_path / "c" / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_name_is_kept_unless_overwrite_and_only_a_comparison_is_replaced(tmp_path, cli):
    small = ["compare-optimizers", "--data", "breast-cancer", "--epochs", 1, "--quiet",
             "--optimizers", "sgd", "--out", tmp_path]
    assert cli(*small, "--name", "c")[0] == 0
    before = (tmp_path / "c" / "comparison.json").read_text()
    rc, _, err = cli(*small, "--name", "c")
    assert rc == 2 and "--overwrite" in err
    assert (tmp_path / "c" / "comparison.json").read_text() == before
    rc, out, err = cli(*small, "--optimizers", "adam", "--name", "c", "--overwrite")
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "c").iterdir() if p.is_dir()) == ["adam"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    rc, _, err = cli(*small, "--name", "mine", "--overwrite")
    assert rc == 2 and "not a comparison folder" in err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    rc, out, _ = cli(*small)
    assert rc == 0 and "compare-mlp-breast-cancer" in out


# ---------------------------------------------------------------- the notes' variants as rows


@pytest.mark.parametrize("entry, label, options", [
    ("adam", "adam", {}),
    ("rmsprop+eps=0", "rmsprop+eps=0", {"eps": 0.0}),
    (" rmsprop + eps=1e-08 ", "rmsprop+eps=1e-8", {"eps": 1e-8}),
    ("rmsprop+eps=1e+5", "rmsprop+eps=100000", {"eps": 1e5}),  # the exponent's '+' is no '+'
    ("rmsprop+eps=0.001+eps-inside-sqrt", "rmsprop+eps=0.001+eps-inside-sqrt",
     {"eps": 1e-3, "eps_inside_sqrt": True}),
    ("adam+no-bias-correction+eps-inside-sqrt", "adam+eps-inside-sqrt+no-bias-correction",
     {"eps_inside_sqrt": True, "bias_correction": False}),
])
def test_an_entry_is_a_rule_with_a_canonical_label(entry, label, options):
    rule = parse_rule(entry)
    assert (rule.label, rule.options()) == (label, options)
    assert parse_rule(rule.label) == rule  # the label reads back as the same rule
    assert set(rule.label) <= set("abcdefghijklmnopqrstuvwxyz0123456789+=-.")  # a folder name
    fields = rule.config_fields()
    assert fields == {"eps": options.get("eps"),
                      "eps_inside_sqrt": options.get("eps_inside_sqrt", False),
                      "bias_correction": options.get("bias_correction", True)}
    assert RunConfig().updated(optimizer=rule.name, **fields).optimizer_variants() == options


@pytest.mark.parametrize("entry, words", [
    ("sgd+eps=0", ["--optimizers sgd+eps=0: sgd has no variant eps (only rmsprop and adam"]),
    ("momentum+eps-inside-sqrt", ["momentum has no variant eps-inside-sqrt"]),
    ("rmsprop+no-bias-correction", ["rmsprop has no variant no-bias-correction",
                                    "only adam has it"]),
    ("adam+eps=x", ["eps=x: expected a finite number >= 0"]),
    ("adam+eps=-1", ["eps=-1: expected a finite number >= 0"]),
    ("adam+eps=nan", ["eps=nan"]),
    ("adam+eps", ["eps needs a value (eps=X)"]),
    ("adam+no-bias-correction=1", ["no-bias-correction takes no value"]),
    ("adam+eps=0+eps=1", ["eps is given twice"]),
    ("adam+", ["an empty variant"]),
    ("adam+bias", ["unknown variant 'bias'"]),
    ("adma+eps=0", ["unknown optimizer 'adma'", "did you mean 'adam'"]),
])
def test_a_bad_entry_says_what_was_expected(entry, words):
    with pytest.raises(DeepnotesError) as info:
        parse_rules(f"sgd,{entry}")
    message = str(info.value)
    assert message.startswith(f"--optimizers {entry}: ") and "\n" not in message
    for word in words:
        assert word in message
    if "optimizer" not in words[0]:  # a variant's mistake: the syntax follows
        assert message.endswith("expected NAME[+VARIANT...] with VARIANT eps=X, "
                                "eps-inside-sqrt or no-bias-correction")


def test_an_entry_spelled_two_ways_is_listed_twice():
    with pytest.raises(DeepnotesError, match="--optimizers: rmsprop\\+eps=0 is listed twice"):
        parse_rules("rmsprop+eps=0,rmsprop+eps=0.0")
    with pytest.raises(DeepnotesError, match="adam\\+eps-inside-sqrt\\+no-bias-correction is "):
        parse_rules("adam+no-bias-correction+eps-inside-sqrt,adam+eps-inside-sqrt"
                    "+no-bias-correction")


def test_a_rule_is_validated_when_it_is_made():
    assert Rule("adam", {"bias_correction": False}).label == "adam+no-bias-correction"
    for variants, words in [({"bias_correction": True}, "plain rule"),
                            ({"eps": -1.0}, "eps=-1.0"), ({"beta": 0.5}, "unknown variant")]:
        with pytest.raises(DeepnotesError, match=words):
            Rule("adam", variants)
    with pytest.raises(DeepnotesError, match="sgd has no variant eps"):
        Rule("sgd", {"eps": 0.0})


def test_the_rule_text_carries_the_variant():
    assert parse_rule("rmsprop").text.endswith("W := W - alpha dW / (sqrt(s) + eps)")
    assert parse_rule("rmsprop+eps-inside-sqrt").text.endswith("alpha dW / sqrt(s + eps)")
    assert parse_rule("rmsprop+eps=0").text.endswith("(sqrt(s) + eps); eps = 0")
    assert "v_hat / (sqrt(s_hat) + eps)" in parse_rule("adam").text
    assert "v_hat / sqrt(s_hat + eps)" in parse_rule("adam+eps-inside-sqrt").text
    plain = parse_rule("adam+no-bias-correction").text
    assert "hat" not in plain and plain.endswith("W := W - alpha v / (sqrt(s) + eps)")


VARIANT_ROWS = ["sgd", "rmsprop", "rmsprop+eps=0", "adam", "adam+eps-inside-sqrt"]


@pytest.mark.parametrize("text, expected", [
    (None, {"sgd": 0.1, "rmsprop": 1e-3, "rmsprop+eps=0": 1e-3, "adam": 3e-3,
            "adam+eps-inside-sqrt": 3e-3}),
    ("rmsprop=0.01", {"rmsprop": 0.01, "rmsprop+eps=0": 0.01}),  # a name: it and its variants
    ("rmsprop+eps=0=1e-4", {"rmsprop": 1e-3, "rmsprop+eps=0": 1e-4}),  # a label: that row
    ("rmsprop+eps=0=1e-4,rmsprop=0.01", {"rmsprop": 0.01, "rmsprop+eps=0": 1e-4}),  # label wins
    ("rmsprop+eps=0.0=1e-4", {"rmsprop+eps=0": 1e-4}),  # any spelling of the entry
    ("0.5,adam+eps-inside-sqrt=1e-3", {"sgd": 0.5, "rmsprop+eps=0": 0.5, "adam": 0.5,
                                       "adam+eps-inside-sqrt": 1e-3}),
])
def test_lr_option_with_variants(text, expected):
    rates = learning_rates(VARIANT_ROWS, None if text is None else parse_lrs(text))
    assert list(rates) == VARIANT_ROWS
    assert {k: rates[k] for k in expected} == pytest.approx(expected)


@pytest.mark.parametrize("text, words", [
    ("adam+no-bias-correction=1e-3", "--lr adam+no-bias-correction=0.001: adam+no-bias-"
                                     "correction is not among the compared optimizers"),
    ("momentum=0.1", "momentum is not among the compared"),
    ("rmsprop+eps=0=1e-3,rmsprop+eps=0.0=2e-3", "--lr: rmsprop+eps=0 is given twice"),
    ("sgd+eps=0=1", "--lr sgd+eps=0: sgd has no variant eps"),
    ("rmsprop+eps=0=0", "--lr rmsprop+eps=0=0: the learning rate must be > 0"),
])
def test_bad_lr_with_variants(text, words):
    with pytest.raises(DeepnotesError) as info:
        learning_rates(VARIANT_ROWS, parse_lrs(text))
    assert words in str(info.value)


def test_a_folder_of_variant_runs_is_a_comparison(tmp_path):
    for label in ("rmsprop", "rmsprop+eps=0", "adam+eps-inside-sqrt+no-bias-correction"):
        (tmp_path / "c" / label).mkdir(parents=True)
        (tmp_path / "c" / label / "config.json").write_text("{}")
    assert is_comparison(tmp_path / "c")
    for name in ("rmsprop+eps=0.0", "adam+no-bias-correction+eps-inside-sqrt", "adam+x"):
        (tmp_path / name).mkdir()  # not a label this module writes
        (tmp_path / name / "config.json").write_text("{}")
        assert not is_comparison(tmp_path), name
        (tmp_path / name / "config.json").unlink()
        (tmp_path / name).rmdir()


@pytest.mark.slow
def test_variants_are_rows_with_their_own_run_folders(tmp_path, cli, monkeypatch):
    """rmsprop, rmsprop+eps=0 and adam+no-bias-correction from the same initial weights: each
    trains with its variant's optimiser, keeps the variant in config.json, is a labelled row."""
    import deepnotes.runs.compare as compare

    used = {}
    real_fit = compare.fit

    def spy(sess, run_dir, **kwargs):
        used[run_dir.name] = (sess.config.optimizer, dict(sess.optimizer.param_groups[0]))
        return real_fit(sess, run_dir, **kwargs)

    monkeypatch.setattr(compare, "fit", spy)
    labels = ["rmsprop", "rmsprop+eps=0", "adam+no-bias-correction"]
    rc, out, err = cli("compare-optimizers", *TABLE[:-3], "--epochs", 1, "--quiet",
                       "--optimizers", "rmsprop, rmsprop+eps=0.0, adam+no-bias-correction",
                       "--lr", "rmsprop+eps=0=2e-3", "--out", tmp_path, "--name", "c")
    assert rc == 0, err
    run_dir = tmp_path / "c"
    assert list(used) == labels
    assert used["rmsprop"][0] == used["rmsprop+eps=0"][0] == "rmsprop"
    assert used["rmsprop"][1]["eps"] == 1e-8 and used["rmsprop+eps=0"][1]["eps"] == 0.0
    assert not used["rmsprop+eps=0"][1]["eps_inside_sqrt"]
    assert used["adam+no-bias-correction"][0] == "adam"
    assert used["adam+no-bias-correction"][1]["bias_correction"] is False
    assert used["rmsprop+eps=0"][1]["lr"] == 2e-3 and used["rmsprop"][1]["lr"] == 1e-3

    expected = {"rmsprop": (None, True), "rmsprop+eps=0": (0.0, True),
                "adam+no-bias-correction": (None, False)}
    for label, (eps, bias_correction) in expected.items():
        config = json.loads((run_dir / label / "config.json").read_text())
        assert (config["eps"], config["eps_inside_sqrt"], config["bias_correction"]) == \
            (eps, False, bias_correction), label
        rebuilt = RunConfig.from_dict(config)  # what evaluate and --resume rebuild
        optimizer = create_optimizer(rebuilt.optimizer, torch.nn.Linear(2, 1).parameters(),
                                     rebuilt.lr, **rebuilt.optimizer_variants())
        group = optimizer.param_groups[0]
        assert {k: group[k] for k in ("eps", "lr")} == {k: used[label][1][k]
                                                        for k in ("eps", "lr")}

    report = json.loads((run_dir / "comparison.json").read_text())
    assert [r["optimizer"] for r in report["rows"]] == [r["run"] for r in report["rows"]] == labels
    assert len({r["initial_weights_sha256"] for r in report["rows"]}) == 1
    assert list(report["rules"]) == labels
    assert report["rules"]["rmsprop+eps=0"].endswith("eps = 0")
    assert "hat" not in report["rules"]["adam+no-bias-correction"]
    assert [r["optimizer"] for r in read_csv(run_dir / "comparison.csv")] == labels
    assert list(read_csv(run_dir / "step_losses.csv")[0]) == ["step", *labels]
    assert [line.split()[0] for line in out.splitlines()[1:4]] == labels
    rc, out, err = cli("evaluate", run_dir / "adam+no-bias-correction", "--json")
    assert rc == 0, err
