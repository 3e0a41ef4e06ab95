"""Every image model trains from the CLI on small images (here 10x10 grey, resized to its input)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from deepnotes.cli import main
from deepnotes.models import list_models, model_class

IMAGE_MODELS = [m for m in list_models() if model_class(m).input_kind == "image"]
# One of each family through the CLI: the VGGs differ only in their config list, and each of
# them writes a 1.6 GB checkpoint (weights and Adam's two moments); test_model_zoo.py trains
# every model for a few steps at its input size.
FAMILIES = ["lenet5", "lenet5_relu", "alexnet", "vgg11_bn", "resnet18", "resnet50", "googlenet",
            "fastnet"]


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
    assert {m.rstrip("0123456789_bnrelu") for m in IMAGE_MODELS} <= {
        m.rstrip("0123456789_bnrelu") for m in FAMILIES}


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_each_model_family_trains_from_the_cli(name, tiny_folder, tmp_path, capsys):
    rc = main(["train", "--data", str(tiny_folder), "--model", name, "--epochs", "1",
               "--batch-size", "8", "--out", str(tmp_path), "--name", "r", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0, err
    config = json.loads((tmp_path / "r/config.json").read_text())
    size = model_class(name).input_size
    assert config["input_shape"] == [1, size, size]
    metrics = json.loads((tmp_path / "r/metrics.json").read_text())
    assert 0 <= metrics["test"]["accuracy"] <= 1


def test_summary_of_a_run_model_agrees_with_training_input(tiny_folder, tmp_path, capsys):
    assert main(["summary", "resnet18", "--input", "1x32x32", "--num-classes", "2"]) == 0
    out = capsys.readouterr().out
    assert "32 x 32 x 1" in out and out.strip().splitlines()[-1].startswith("total")
