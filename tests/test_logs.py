"""What a log file gets: no progress bars (no carriage returns) when stderr is not a terminal,
one line an epoch instead; a terminal still gets the bars."""

from __future__ import annotations

import json
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
    assert len(events.Scalars("images_per_second")) == 3
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
