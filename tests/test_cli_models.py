"""Every image model family takes small images (here 10x10 grey, resized to its input size): the
light ones train from the CLI into a run folder, the heavy ones take one step in the library."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from deepnotes.cli import main
from deepnotes.data import Normalizer, load_dataset
from deepnotes.models import create_model, list_models, model_class
from deepnotes.optim import GradientDescent

IMAGE_MODELS = [m for m in list_models() if model_class(m).input_kind == "image"]
# One of each family through the CLI, where the run folder stays small.
CLI_FAMILIES = ["lenet5", "lenet5_relu", "alexnet", "resnet18", "resnet50", "googlenet",
                "fastnet"]
# The VGGs differ only in their config list; through the CLI each writes a 1.6 GB checkpoint (the
# weights and Adam's two moments) to train on 16 images, so VGG takes the CLI's data path and one
# step in the library instead (test_model_zoo.py trains every model a few steps at input size).
LIBRARY_FAMILIES = ["vgg11_bn"]


def family(name: str) -> str:
    return name.rstrip("0123456789_bnrelu")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """Two classes of 8 tiny images: bright squares on the left or on the right."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for label, side in (("left", slice(0, 5)), ("right", slice(5, 10))):
        (root / label).mkdir()
        for i in range(8):
            pixels = rng.integers(0, 60, (10, 10), dtype=np.uint8)
            pixels[:, side] += 150
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


def test_the_families_cover_the_zoo():
    assert {family(m) for m in IMAGE_MODELS} <= {family(m) for m in
                                                   CLI_FAMILIES + LIBRARY_FAMILIES}


@pytest.mark.parametrize("name", LIBRARY_FAMILIES)
def test_a_heavy_model_reads_the_tiny_images_and_one_step_lowers_its_loss(name, tiny_folder):
    """The CLI's data path without its checkpoint: the folder read and resized to the model's
    input size, normalised, then one forward, backward and gradient-descent step on 4 images."""
    size = model_class(name).input_size
    data = load_dataset(str(tiny_folder), image_size=size)
    assert data.x.shape == (16, 1, size, size) and data.classes == ["left", "right"]
    keep = torch.tensor([0, 1, 8, 9])  # two of each class
    x, y = Normalizer.fit(data.x)(data.x)[keep], data.y[keep]  # x: (4, 1, size, size)
    torch.manual_seed(0)
    model = create_model(name, num_classes=2, in_channels=1)
    optimizer = GradientDescent(model.parameters(), lr=1e-3)
    torch.manual_seed(1)  # the same dropout masks in both forward passes
    z = model(x)  # (4, 2)
    assert z.shape == (4, 2) and torch.isfinite(z).all()
    loss = F.cross_entropy(z, y)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    first_conv = next(p for p in model.parameters() if p.dim() == 4)
    assert first_conv.grad.abs().sum() > 0  # the error reaches the first convolution
    optimizer.step()
    torch.manual_seed(1)
    with torch.no_grad():
        after = F.cross_entropy(model(x), y)
    assert after < 0.5 * loss.item(), (loss.item(), after.item())


@pytest.mark.slow
@pytest.mark.parametrize("name", CLI_FAMILIES)
def test_each_model_family_trains_from_the_cli(name, tiny_folder, tmp_path, capsys):
    rc = main(["train", "--data", str(tiny_folder), "--model", name, "--epochs", "1",
               "--batch-size", "8", "--out", str(tmp_path), "--name", "r", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0, err
    run = tmp_path / "r"
    config = json.loads((run / "config.json").read_text())
    size = model_class(name).input_size
    assert config["input_shape"] == [1, size, size] and config["model"] == name
    with open(run / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and math.isfinite(float(rows[0]["train_loss"]))
    saved = {k: tuple(v.shape) for k, v in load_file(str(run / "model.safetensors")).items()}
    fresh = create_model(name, num_classes=2, in_channels=1).state_dict()
    assert saved == {k: tuple(v.shape) for k, v in fresh.items()}  # the run's model, whole
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["test"]["accuracy"] <= 1


def test_summary_of_a_run_model_agrees_with_training_input(tiny_folder, tmp_path, capsys):
    assert main(["summary", "resnet18", "--input", "1x32x32", "--num-classes", "2"]) == 0
    out = capsys.readouterr().out
    assert "32 x 32 x 1" in out and out.strip().splitlines()[-1].startswith("total")


def _parsers(parser, path=("deepnotes",)):
    """Every (command path, parser) of the CLI, subcommands of subcommands included."""
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_every_help_page_renders_and_documents_each_option():
    from deepnotes.cli import build_parser

    pages = list(_parsers(build_parser()))
    assert len(pages) > 20  # every command and word2vec's own
    for path, parser in pages:
        text = parser.format_help()
        assert "%%" not in text and "%(" not in text, (path, "unformatted %")
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, (path, action.option_strings, "no help text")
