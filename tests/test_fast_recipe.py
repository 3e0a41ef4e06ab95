"""--recipe fast: the fastnet network, the mirror image at test time, the recipe's defaults under
explicit options, and a trainer that reads a GPU's step losses in groups."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from deepnotes.data import Batches, Normalizer
from deepnotes.device import cpu_has_bf16
from deepnotes.errors import DeepnotesError
from deepnotes.models import create_model
from deepnotes.models.fastnet import FastNet
from deepnotes.optim import create_optimizer
from deepnotes.runs.build import build_model
from deepnotes.runs.config import RunConfig
from deepnotes.train import Trainer
from deepnotes.train.recipes import RECIPES, recipe_options


def test_fastnet_layers_and_parameter_count():
    model = create_model("fastnet", num_classes=10, in_channels=1)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (1, 64, (3, 3)), (64, 64, (3, 3)), (64, 64, (3, 3)), (64, 256, (3, 3)),
        (256, 256, (3, 3)), (256, 256, (3, 3)), (256, 256, (3, 3))]
    assert all(c.bias is None for c in convs)  # batch norm's beta takes the bias's place
    # 9 n_C[l-1] n_C[l] per convolution, gamma and beta per channel, the softmax layer's W
    expected = sum(9 * c.in_channels * c.out_channels + 2 * c.out_channels for c in convs)
    expected += 256 * 10
    assert sum(p.numel() for p in model.parameters()) == expected


@pytest.mark.parametrize("size, after_blocks", [(28, 3), (8, 1), (32, 4)])
def test_fastnet_halves_three_times_and_pools_globally(size, after_blocks):
    model = FastNet(num_classes=5, in_channels=3, widths=(8, 16, 24)).eval()
    seen = []
    model.body[-2].register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    z = model(torch.randn(2, 3, size, size))
    assert z.shape == (2, 5)
    assert seen == [(2, 24, after_blocks, after_blocks)]


def test_mirror_tta_averages_the_logits_of_the_image_and_its_mirror():
    torch.manual_seed(0)
    model = FastNet(num_classes=4, widths=(8, 8, 8), mirror_tta=True)
    plain = FastNet(num_classes=4, widths=(8, 8, 8))
    plain.load_state_dict(model.state_dict())
    x = torch.randn(6, 1, 12, 12)
    model.eval(), plain.eval()
    with torch.no_grad():
        expected = (plain(x) + plain(x.flip(-1))) / 2
        torch.testing.assert_close(model(x), expected)
        assert not torch.allclose(model(x), plain(x))
    model.train(), plain.train()
    torch.testing.assert_close(model(x), plain(x))  # training sees one view only


@pytest.mark.parametrize("augment, mirrored", [("crop,flip", True), ("flip", True),
                                               ("crop", False), (None, False)])
def test_the_run_turns_the_mirror_on_exactly_when_training_flipped(augment, mirrored):
    config = RunConfig(model="fastnet", classes=["a", "b"], in_channels=1, kind="image",
                       augment=augment)
    assert build_model(config).mirror_tta is mirrored


def test_recipe_options():
    cpu = torch.device("cpu")
    fast = recipe_options("fast", cpu)
    assert {k: fast[k] for k in RECIPES["fast"]} == RECIPES["fast"]
    assert fast["precision"] == ("bf16" if cpu_has_bf16() else "32")
    assert recipe_options(None, cpu) == {}
    with pytest.raises(DeepnotesError, match="recipe 'slow'.*fast"):
        recipe_options("slow", cpu)


@pytest.mark.slow
def test_train_with_the_fast_recipe_and_an_explicit_option(cli, tmp_path):
    rc, out, err = cli("train", "--recipe", "fast", "--data", "digits", "--epochs", 1,
                       "--augment", "crop", "--batch-size", 128, "--quiet", "--out", tmp_path,
                       "--name", "r")
    assert rc == 0, err
    config = json.loads((tmp_path / "r/config.json").read_text())
    assert config["recipe"] == "fast" and config["model"] == "fastnet"
    assert config["batch_size"] == 128 and config["augment"] == "crop"  # explicit options win
    assert config["lr"] == RECIPES["fast"]["lr"] and config["channels_last"] is True
    assert config["input_shape"] == [1, 28, 28]
    assert config["precision"] == ("bf16" if cpu_has_bf16() else "32")
    metrics = json.loads((tmp_path / "r/metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.5  # one epoch of 10 digits: far above chance (0.1)
    rc, out, err = cli("evaluate", tmp_path / "r")  # rebuilds fastnet from config.json alone
    assert rc == 0, err
    assert f"{metrics['test']['accuracy']:.4f}" in out


@pytest.mark.slow
def test_the_older_bf16_flag_wins_over_the_recipe(cli, tmp_path, monkeypatch):
    monkeypatch.setattr("deepnotes.device.cpu_has_bf16", lambda: False)  # the recipe picks 32
    rc, _, err = cli("train", "--recipe", "fast", "--bf16", "--data", "digits", "--epochs", 1,
                     "--augment", "crop", "--quiet", "--out", tmp_path, "--name", "r")
    assert rc == 0, err
    assert json.loads((tmp_path / "r/config.json").read_text())["precision"] == "bf16"


def test_an_unknown_recipe_is_one_line(cli, tmp_path):
    rc, _, err = cli("train", "--recipe", "fastest", "--out", tmp_path)
    assert rc == 2 and "recipe 'fastest'" in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def tiny_trainer(read_every: int, x: torch.Tensor, y: torch.Tensor):
    torch.manual_seed(0)
    model = create_model("mlp", num_classes=2, in_channels=x.shape[1])
    trainer = Trainer(model, create_optimizer("adam", model.parameters(), 1e-2), epochs=2,
                      progress=False)
    trainer.read_every = read_every  # what a GPU does (every 25 steps)
    batches = Batches(x, y, torch.arange(len(x)), 8, Normalizer([0.0] * x.shape[1],
                                                               [1.0] * x.shape[1]), shuffle=True)
    return trainer, batches


def test_reading_step_losses_in_groups_changes_nothing():
    torch.manual_seed(1)
    x, y = torch.randn(100, 4), torch.randint(0, 2, (100,))
    histories, losses, weights = [], [], []
    for read_every in (1, 5):
        trainer, batches = tiny_trainer(read_every, x, y)
        history = trainer.fit(batches)
        histories.append([{k: v for k, v in row.items() if k != "seconds"} for row in history])
        losses.append(trainer.step_losses)
        weights.append(torch.cat([p.detach().flatten() for p in trainer.model.parameters()]))
    assert histories[0] == histories[1]
    assert losses[0] == losses[1] and len(losses[0]) == 2 * 13
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=0)


def test_a_nan_read_late_still_names_its_step():
    x, y = torch.randn(64, 3), torch.arange(64) % 2
    trainer, batches = tiny_trainer(5, x, y)
    order = batches.order(0)
    x[order[6 * 8 + 2], 1] = float("nan")  # an example of the 7th batch of epoch 1
    with pytest.raises(DeepnotesError, match=r"loss became nan at epoch 1, step 7 \(lr"):
        trainer.fit(batches)
    assert len(trainer.step_losses) == 6  # the steps before it were counted
