"""What a log file gets: no progress bars (no carriage returns) when stderr is not a terminal,
one line an epoch instead; a terminal still gets the bars. The training rate in each task's
unit (images/s, rows/s, sequences/s, tokens/s), the same number in the bar and the epoch line."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from conftest import write_photos


@pytest.mark.slow  # starts a process
def test_a_log_file_gets_one_line_an_epoch_and_no_carriage_returns(tmp_path):
    photos = write_photos(tmp_path / "photos")
    done = subprocess.run([sys.executable, "-m", "deepnotes", "train", "--data", str(photos),
                           "--epochs", "3", "--data-cache", "on", "--cache-dir",
                           str(tmp_path / "cache"), "--out", str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "\r" not in done.stdout
    epochs = [line for line in done.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert any(line.startswith("decoding 36 images of photos into the cache")
               for line in done.stderr.splitlines())


def test_progress_bars_are_for_terminals_only(monkeypatch):
    from deepnotes.cli import build_parser, main

    seen = []
    parser = build_parser()

    def fake_build_parser():
        sub = parser._subparsers._group_actions[0].choices["devices"]
        sub.set_defaults(handler=lambda args: seen.append(args.progress) or 0)
        return parser

    monkeypatch.setattr("deepnotes.cli.build_parser", fake_build_parser)
    for tty in (True, False):
        monkeypatch.setattr(sys.stderr, "isatty", lambda tty=tty: tty)
        assert main(["devices"]) == 0
    assert seen == [True, False]


@pytest.mark.slow  # trains through the CLI
def test_tensorboard_gets_every_epochs_scalars_and_the_hyperparameters(cli, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from deepnotes.train.history import read_history

    rc, _, err = cli("train", "--data", "breast-cancer", "--epochs", 3, "--tensorboard",
                     "--quiet", "--out", tmp_path, "--name", "tb")
    assert rc == 0, err
    events = EventAccumulator(str(tmp_path / "tb" / "tensorboard"))
    events.Reload()
    history = read_history(tmp_path / "tb" / "history.csv")
    for column, tag in (("train_loss", "loss/train"), ("dev_accuracy", "accuracy/dev"),
                        ("dev_f1", "f1/dev"), ("lr", "learning_rate")):
        points = events.Scalars(tag)
        assert [p.step for p in points] == [1, 2, 3]
        assert [p.value for p in points] == pytest.approx([row[column] for row in history],
                                                          rel=1e-6)
    rates = events.Scalars("rows_per_second")  # a table: its rows a second
    assert [p.step for p in rates] == [1, 2, 3] and all(p.value > 0 for p in rates)
    assert "images_per_second" not in events.Tags()["scalars"]
    best = json.loads((tmp_path / "tb" / "metrics.json").read_text())["best"]
    kept = events.Scalars(f"hparam/{best['monitor']}")  # with the options, once
    assert [p.value for p in kept] == pytest.approx([best["value"]])


def test_tensorboard_without_its_package_is_one_line(cli, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    rc, _, err = cli("train", "--data", "breast-cancer", "--epochs", 1, "--tensorboard",
                     "--quiet", "--out", tmp_path)
    assert rc == 2 and err.strip().splitlines() == [
        "error: --tensorboard needs the tensorboard package: pip install "
        "'deepnotes[tensorboard]' (or pip install tensorboard)"]
    assert not any(tmp_path.iterdir())  # nothing half-written


# ---------------------------------------------------------------- the training rate


@pytest.mark.parametrize("kind, multitask, unit", [
    ("image", False, "images"), ("table", False, "rows"), ("table", True, "rows"),
    ("tokens", False, "sequences"), ("lm", False, "tokens"), ("tags", False, "tokens"),
    ("pairs", False, "tokens")])
def test_each_kind_of_data_names_what_its_rate_counts(kind, multitask, unit):
    from deepnotes.train.tasks import TASKS, UNITS, task_for
    from deepnotes.train.throughput import label

    assert UNITS.keys() == TASKS.keys()
    assert task_for(kind, multitask).unit == unit
    assert label(unit) == f"{unit}/s"


@pytest.mark.parametrize("n, batch, drop_last", [(20, 8, True), (20, 8, False), (16, 8, True)])
def test_the_examples_of_s_steps_are_all_ranks_examples(n, batch, drop_last):
    """min(s B, n) is what the two ranks' slices of the first s global batches hold together:
    each rank counts the global examples without asking the other."""
    import torch

    from deepnotes.data.loader import Batches, Normalizer
    from deepnotes.train.throughput import examples_done, rate, units_done

    x, y = torch.randn(n, 2), torch.arange(n)
    ranks = [list(Batches(x, y, torch.arange(n), batch, Normalizer([], [], 1.0), shuffle=True,
                          drop_last=drop_last, shard=(r, 2)).epoch(0)) for r in range(2)]
    for s in range(len(ranks[0]) + 1):
        together = sum(len(yb) for part in ranks for _, yb in part[:s])
        assert examples_done(s, batch, n) == together
        assert units_done("rows", s, batch, n, tokens=999) == together
    assert units_done("tokens", 2, batch, n, tokens=123) == 123  # tokens: the targets counted
    assert rate(300, 1.5) == 200.0


class FakeBar:
    """tqdm as the trainer uses it, keeping each postfix."""

    postfixes: list = []

    def __init__(self, *args, **kwargs):
        self.disable = kwargs.get("disable", False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def set_postfix(self, values, refresh=True):
        FakeBar.postfixes.append(dict(values))

    def update(self, n=1):
        pass


class Said(logging.Handler):
    """The messages logged."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def fit_tiny(task, x, y, monkeypatch, batch=8):
    """Two epochs of ``task`` on (x, y) in batches of ``batch``: (the rows on_epoch got, the
    epoch lines logged)."""
    import torch

    from deepnotes.data.loader import Batches, Normalizer
    from deepnotes.train import Trainer

    monkeypatch.setattr("deepnotes.train.trainer.tqdm", FakeBar)
    FakeBar.postfixes = []
    model = torch.nn.Linear(x.shape[1], 2) if task.unit != "tokens" else \
        torch.nn.Embedding(int(x.max()) + 1, 3)
    rows: list = []
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), epochs=2,
                      schedule="constant", task=task, on_epoch=rows.append)
    batches = Batches(x, y, torch.arange(len(x)), batch, Normalizer([], [], 1.0), shuffle=True,
                      drop_last=True)
    handler = Said()  # on the trainer's own logger: the CLI's setup may stop propagation
    logger = logging.getLogger("deepnotes.train.trainer")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        trainer.fit(batches)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return rows, [line for line in handler.lines if line.startswith("epoch ")]


def test_the_bar_and_the_epoch_line_show_one_rate_in_the_tasks_unit(monkeypatch):
    import torch

    from deepnotes.train.tasks import task_for

    x, y = torch.randn(44, 3), torch.randint(0, 2, (44,))
    rows, lines = fit_tiny(task_for("table"), x, y, monkeypatch)
    assert len(lines) == 2 and all(line.endswith(" rows/s") for line in lines)
    assert "img" not in " ".join(lines)
    for row, line in zip(rows, lines):  # 5 batches of 8 of the 44 rows: 40 rows an epoch
        assert row["rate"] == pytest.approx(40 / row["seconds"])
        assert line.split("| ")[-1] == f"{row['rate']:.0f} rows/s"
    last_of_epoch = FakeBar.postfixes[4::5]  # the bar after each epoch's 5th step
    assert all("rows/s" in p and "img_s" not in p for p in FakeBar.postfixes)
    for postfix, row in zip(last_of_epoch, rows):
        assert float(postfix["rows/s"]) == pytest.approx(row["rate"], rel=0.1)


def test_a_language_models_rate_counts_the_tokens_predicted(monkeypatch):
    import torch

    from deepnotes.data.dataset import IGNORE
    from deepnotes.train.tasks import task_for

    x = torch.randint(0, 5, (24, 6))
    y = torch.randint(0, 3, (24, 6))
    y[:, 4:] = IGNORE  # padding: 4 tokens a sequence are predicted
    rows, lines = fit_tiny(task_for("lm"), x, y, monkeypatch)
    assert all(line.endswith(" tokens/s") for line in lines)
    for row in rows:  # 3 batches of 8 sequences x 4 tokens
        assert row["rate"] * row["seconds"] == pytest.approx(96)
    assert all("tokens/s" in p for p in FakeBar.postfixes)


@pytest.mark.parametrize("extra, unit, counted", [
    ({}, None, "examples"), ({"perplexity": 3.0}, None, "tokens"),  # a language model's
    ({"exact_match": 0.5}, None, "tokens"), ({}, "tokens", "tokens"), ({}, "rows", "examples")])
def test_the_metrics_table_says_when_it_counts_tokens(capsys, extra, unit, counted):
    from deepnotes.cli.evaluate import print_table

    split = {"accuracy": 0.9, "loss": 0.3, "precision": 0.8, "recall": 0.8, "f1": 0.8,
             "f1_micro": 0.9, "f1_weighted": 0.9, "per_class": [{"support": 40}], **extra}
    print_table({"train": split, "dev": split}, unit)
    header, *_, note = [line for line in capsys.readouterr().out.splitlines()
                        if not line.startswith(("perplexity", "exact"))]
    assert header.split()[:2] == ["split", counted]
    assert ("tokens counts the steps predicted" in note) == (counted == "tokens")
