"""The best epoch is the kept model: --monitor chooses it, --early-stop stops after it, a resumed
run keeps the best so far, and a checkpoint holds it apart from the last weights."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import close
from deepnotes.models import create_model
from deepnotes.optim import create_optimizer
from deepnotes.train import checkpoint
from deepnotes.train.history import improves, read_history
from deepnotes.train.state import TrainState

# breast-cancer, plain gradient descent at a constant alpha of 0.3: the dev loss is lowest at
# epoch 2 and higher after it, the dev macro F1 highest at epoch 6 (of 8)
COMMON = ["train", "--data", "breast-cancer", "--optimizer", "sgd", "--lr", "0.3", "--schedule",
          "constant", "--batch-size", "32", "--quiet"]


def best_row(history: list[dict], monitor: str) -> dict:
    """The first row with the lowest dev loss, or the highest dev accuracy or F1."""
    sign = 1 if monitor == "dev_loss" else -1
    return min(history, key=lambda row: (sign * row[monitor], row["epoch"]))


@pytest.mark.parametrize("value, best, delta, better", [
    (0.5, None, 0.0, True), (0.4, 0.5, 0.0, True), (0.5, 0.5, 0.0, False),
    (0.45, 0.5, 0.1, False), (0.35, 0.5, 0.1, True)])
def test_a_loss_improves_by_falling_and_accuracy_by_rising(value, best, delta, better):
    assert improves("dev_loss", value, best, delta) is better
    flipped = None if best is None else -best
    assert improves("dev_accuracy", -value, flipped, delta) is better


def test_a_checkpoint_keeps_the_best_weights_apart_and_model_safetensors_holds_them(tmp_path):
    torch.manual_seed(0)
    model = create_model("mlp", num_classes=2, in_channels=3)
    optimizer = create_optimizer("sgd", model.parameters(), 0.1)
    best = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # the last weights, not the best
    state = TrainState(epoch=3, global_step=30, monitor="dev_loss", best_epoch=1, best_value=0.2)
    checkpoint.save(tmp_path, model, optimizer, state, best)
    kept = load_file(str(tmp_path / "model.safetensors"))
    assert all(torch.equal(kept[k], best[k]) for k in best)
    assert all(torch.equal(v, best[k]) for k, v in checkpoint.committed_weights(tmp_path).items())
    fresh = create_model("mlp", num_classes=2, in_channels=3)
    loaded, loaded_best = checkpoint.load(tmp_path, fresh, create_optimizer(
        "sgd", fresh.parameters(), 0.1))
    assert loaded.best_epoch == 1 and loaded.best_value == 0.2 and loaded.monitor == "dev_loss"
    assert all(torch.equal(loaded_best[k], best[k]) for k in best)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in fresh.state_dict().items())
    (tmp_path / "model.safetensors").unlink()  # a kill before the derived files: repaired
    assert checkpoint.repair(tmp_path)
    kept = load_file(str(tmp_path / "model.safetensors"))
    assert all(torch.equal(kept[k], best[k]) for k in best)


@pytest.mark.slow  # trains through the CLI
@pytest.mark.parametrize("monitor", ["dev_loss", "dev_accuracy", "dev_f1"])
def test_the_kept_model_is_the_best_epoch_of_the_monitor(cli, tmp_path, monitor):
    rc, _, err = cli(*COMMON, "--epochs", 8, "--monitor", monitor, "--out", tmp_path,
                     "--name", "run")
    assert rc == 0, err
    run = tmp_path / "run"
    history = read_history(run / "history.csv")
    want = best_row(history, monitor)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best"] == {"monitor": monitor, "epoch": int(want["epoch"]),
                               "value": pytest.approx(want[monitor]), "stopped": None}
    assert metrics["dev"]["loss"] == pytest.approx(want["dev_loss"], rel=1e-5)
    assert metrics["dev"]["accuracy"] == pytest.approx(want["dev_accuracy"], abs=1e-6)
    assert metrics["dev"]["f1"] == pytest.approx(want["dev_f1"], abs=1e-9)
    rc, out, err = cli("evaluate", run, "--split", "dev")
    assert rc == 0, err
    assert f"{want['dev_accuracy']:.4f}" in out.splitlines()[1]
    if monitor != "dev_accuracy":  # accuracy is best at epoch 1: the others are not the last
        assert want["epoch"] < 8


@pytest.mark.slow  # trains through the CLI
def test_early_stopping_stops_after_patience_and_keeps_the_best(cli, tmp_path):
    rc, out, err = cli(*COMMON, "--epochs", 8, "--early-stop", 3, "--out", tmp_path,
                       "--name", "early")
    assert rc == 0, err
    run = tmp_path / "early"
    history = read_history(run / "history.csv")
    best = best_row(history, "dev_loss")
    assert best["epoch"] == 2 and len(history) == 5  # epochs 3, 4, 5 did not improve
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best"]["epoch"] == 2
    assert metrics["best"]["stopped"].startswith("early stop: dev_loss did not improve")
    assert json.loads((run / "state.json").read_text())["stopped"] == metrics["best"]["stopped"]
    assert metrics["dev"]["loss"] == pytest.approx(best["dev_loss"], rel=1e-5)
    assert "kept: epoch 2" in out
    rc, _, err = cli(*COMMON, "--epochs", 8, "--early-stop", 3, "--resume", run)
    assert rc == 0, err  # stopped is finished: nothing more is trained
    assert len(read_history(run / "history.csv")) == 5


@pytest.mark.slow  # trains through the CLI
def test_a_resumed_run_keeps_the_best_so_far(cli, tmp_path):
    """The best epoch (2) falls before the interruption (after epoch 4): the resumed run must
    keep it, not the better-than-nothing best of the epochs it trained itself (keras#11703)."""
    rc, _, err = cli(*COMMON, "--epochs", 8, "--out", tmp_path, "--name", "whole")
    assert rc == 0, err
    rc, _, err = cli(*COMMON, "--epochs", 4, "--out", tmp_path, "--name", "parts")
    assert rc == 0, err
    rc, _, err = cli(*COMMON, "--epochs", 8, "--resume", tmp_path / "parts", "--allow-changes")
    assert rc == 0, err
    whole, parts = (load_file(str(tmp_path / n / "model.safetensors")) for n in ("whole", "parts"))
    for k in whole:
        close(parts[k], whole[k], rtol=1e-5, atol=1e-6)
    m_whole, m_parts = (json.loads((tmp_path / n / "metrics.json").read_text())
                        for n in ("whole", "parts"))
    assert m_parts["best"]["epoch"] == m_whole["best"]["epoch"] == 2
    assert m_parts["test"]["accuracy"] == m_whole["test"]["accuracy"]
