"""The main job end to end: `deepnotes train` with no options, then evaluate and predict."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from deepnotes.cli import main

FILES = ["config.json", "model.safetensors", "state.safetensors", "state.json", "history.csv",
         "metrics.json", "learning_curves.png", "confusion_matrix.png"]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The README's main job: no options but where to write and no progress bars."""
    out = tmp_path_factory.mktemp("main")
    assert main(["train", "--out", str(out), "--quiet"]) == 0
    return out / "lenet5-digits"


@pytest.mark.slow
def test_default_run_reaches_the_promised_accuracy(default_run):
    metrics = json.loads((default_run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.95
    assert set(metrics) == {"train", "dev", "test", "best"}  # best: the kept epoch
    assert metrics["best"]["monitor"] == "dev_loss" and metrics["best"]["epoch"] >= 1


@pytest.mark.slow
def test_run_folder_has_every_file(default_run):
    for name in FILES:
        assert (default_run / name).stat().st_size > 0, name
    assert not list(default_run.glob(".*tmp*")), "temporary files left behind"
    config = json.loads((default_run / "config.json").read_text())
    assert config["model"] == "lenet5" and config["data"] == "digits"
    assert config["input_shape"] == [1, 32, 32]  # 8x8 digits shown at 32x32


@pytest.mark.slow
def test_metrics_json_agrees_with_its_confusion_matrix(default_run):
    metrics = json.loads((default_run / "metrics.json").read_text())
    for name, split in metrics.items():
        if name == "best":  # the kept epoch, not a split
            continue
        cm = np.array(split["confusion_matrix"])
        assert split["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
        tp = np.diag(cm)
        precision = np.divide(tp, cm.sum(0), out=np.zeros(len(cm)), where=cm.sum(0) > 0)
        recall = tp / cm.sum(1)
        assert split["precision"] == pytest.approx(precision.mean())
        assert split["recall"] == pytest.approx(recall.mean())
        assert [row["support"] for row in split["per_class"]] == cm.sum(1).tolist()
        for key in ("loss", "f1", "f1_micro", "f1_weighted"):
            assert np.isfinite(split[key])


@pytest.mark.slow
def test_history_has_one_row_an_epoch(default_run):
    with open(default_run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    config = json.loads((default_run / "config.json").read_text())
    assert len(rows) == config["epochs"]
    assert list(rows[0]) == ["epoch", "train_loss", "train_accuracy", "dev_loss", "dev_accuracy",
                             "dev_f1", "lr", "seconds"]
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])


@pytest.mark.slow
def test_model_file_holds_the_weights_alone(default_run):
    weights = load_file(default_run / "model.safetensors")
    assert sum(t.numel() for t in weights.values()) == 61_706  # LeNet-5, 1x32x32, 10 classes


@pytest.mark.slow
def test_evaluate_repeats_the_test_metrics(default_run, capsys):
    assert main(["evaluate", str(default_run), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    stored = json.loads((default_run / "metrics.json").read_text())
    assert printed["test"]["accuracy"] == pytest.approx(stored["test"]["accuracy"])
    assert printed["test"]["confusion_matrix"] == stored["test"]["confusion_matrix"]


@pytest.mark.slow
def test_evaluate_prints_a_table(default_run, capsys):
    assert main(["evaluate", str(default_run), "--split", "dev"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith("dev")
    assert "support" in out


@pytest.mark.slow
def test_predict_gives_probabilities(default_run, tmp_path, capsys):
    import torch
    from sklearn.datasets import load_digits

    from deepnotes.data import Normalizer
    from deepnotes.data.images import load_image
    from deepnotes.runs.build import build_data
    from deepnotes.runs.config import read_config
    from deepnotes.runs.folder import load_trained

    digits = load_digits()
    config = read_config(default_run)
    paths = []
    for i in range(3):
        path = tmp_path / f"digit{i}.png"
        Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).save(path)
        paths.append(str(path))
    x = torch.stack([load_image(p, 32, 1) for p in paths])  # the pixels predict reads
    assert (x.int() - build_data(config)[0].x[:3].int()).abs().max() <= 1  # rounding apart
    with torch.no_grad():
        z = load_trained(default_run, config)(Normalizer.from_dict(config.normalize)(x))
    assert main(["predict", str(default_run), *paths, "--top-k", "10", "--json"]) == 0
    predictions = json.loads(capsys.readouterr().out)
    for item, row in zip(predictions, torch.softmax(z, 1)):
        probs = [t["probability"] for t in item["top"]]
        assert all(0 < p < 1 for p in probs)
        assert sum(probs) == pytest.approx(1, abs=1e-5)
        assert probs == sorted(probs, reverse=True)
        assert item["top"][0]["class"] == config.classes[int(row.argmax())]  # as evaluate's
        for t in item["top"]:
            assert t["probability"] == pytest.approx(float(row[config.classes.index(
                t["class"])]), abs=1e-5)


@pytest.mark.slow
def test_predict_prints_top_k(default_run, tmp_path, capsys):
    path = tmp_path / "x.png"
    Image.new("L", (8, 8), 0).save(path)
    assert main(["predict", str(default_run), str(path), "--top-k", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(path)) and len(line.split()) == 5  # path, 2 x (class, p)


@pytest.mark.slow
def test_python_dash_m_and_the_devices_command():
    import subprocess
    import sys

    import deepnotes

    version = subprocess.run([sys.executable, "-m", "deepnotes", "--version"],
                             capture_output=True, text=True, timeout=120)
    assert version.returncode == 0
    assert version.stdout.strip() == f"deepnotes {deepnotes.__version__}"
    devices = subprocess.run([sys.executable, "-m", "deepnotes", "devices"],
                             capture_output=True, text=True, timeout=120)
    assert devices.returncode == 0
    assert devices.stdout.splitlines()[0].startswith("cpu")
