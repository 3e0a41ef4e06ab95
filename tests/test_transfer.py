"""Transfer learning: layer groups, freezing, the auto rule, the feature cache, ``finetune``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from conftest import close
from deepnotes import feature_cache, transfer
from deepnotes.errors import DeepnotesError
from deepnotes.models import create_model


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Task A: a run of ``deepnotes train --data digits --epochs 1`` (ten classes); task B: a
    folder of the digits 5-9 as PNG files (five classes)."""
    from sklearn.datasets import load_digits

    from deepnotes.cli import main

    root = tmp_path_factory.mktemp("transfer")
    assert main(["train", "--data", "digits", "--epochs", "1", "--out", str(root / "runs"),
                 "--name", "a", "--quiet"]) == 0
    digits = load_digits()
    for i, (image, label) in enumerate(zip(digits.images, digits.target)):
        if label >= 5:
            folder = root / "b" / f"digit{label}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray((image * 255 / 16).astype(np.uint8)).save(folder / f"{i}.png")
    return root


def weights(run_dir) -> dict:
    return load_file(str(run_dir / "model.safetensors"))


def finetune(cli, work, name, *args):
    rc, out, err = cli("finetune", work / "runs" / "a", "--data", work / "b", "--out",
                       work / "runs", "--name", name, "--overwrite", "--quiet", *args)
    assert rc == 0, err
    return out, weights(work / "runs" / name)


# -- layer groups, freezing, the rule -------------------------------------------------------

@pytest.mark.parametrize("name", ["lenet5", "mlp", "resnet18", "alexnet", "googlenet"])
def test_groups_cover_every_layer_but_the_head(name):
    model = create_model(name, num_classes=3, in_channels=8 if name == "mlp" else 1)
    groups = transfer.layer_groups(model)
    assert len(groups) >= 2
    assert transfer.freeze(model, len(groups)) == [g for g, _ in groups]
    head = {id(p) for p in model.head.parameters()}
    assert {id(p) for p in model.parameters() if p.requires_grad} == head
    transfer.freeze(model, 0)
    assert all(p.requires_grad for p in model.parameters())


def test_lenet5_groups_and_bad_counts():
    model = create_model("lenet5", num_classes=5)
    assert transfer.group_names(model) == ["conv.0", "conv.3", "fc.1", "fc.3"]
    with pytest.raises(DeepnotesError, match=r"--freeze 5: the model has 4 layer groups"):
        transfer.freeze(model, 5)


def test_auto_rule_freezes_fewer_layers_the_more_data():
    choices = [transfer.auto_freeze(n, 4) for n in (5, 20, 100, 150, 316, 1000, 3162, 10_000, 1e6)]
    assert choices == [4, 4, 4, 4, 3, 2, 1, 0, 0]
    assert transfer.parse_freeze("all-but-head", 4, 20) == 4
    assert transfer.parse_freeze("none", 4, 20) == 0
    with pytest.raises(DeepnotesError, match="--freeze two: expected auto, none"):
        transfer.parse_freeze("two", 4, 20)


def test_frozen_parameters_do_not_change_and_the_others_do():
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=3, in_channels=1)
    frozen = transfer.freeze(model, 2)
    assert frozen == ["conv1", "layer1"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    for _ in range(2):
        x, y = torch.randn(4, 1, 16, 16), torch.randint(0, 3, (4,))
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    after = model.state_dict()
    for key in before:  # weights and batch norm's running averages alike
        same = torch.equal(before[key], after[key])
        if key.startswith(("conv1.", "bn1.", "layer1.")):
            assert same, key
        elif key.endswith(("weight", "running_mean")):
            assert not same, key
    assert not model.layer1.training  # a frozen group runs in inference mode


def test_discriminative_learning_rates():
    model = create_model("lenet5", num_classes=5)
    groups = transfer.optimizer_groups(model, lr=1.0, decay=2.0, frozen=1)
    assert [g["lr"] for g in groups] == [1.0, 1 / 8, 1 / 4, 1 / 2]  # head, conv.3, fc.1, fc.3
    assert sum(len(g["params"]) for g in groups) == 8  # conv.0's two tensors left out


# -- the feature cache ------------------------------------------------------------------------

def test_cache_key_changes_with_weights_data_and_normalisation():
    model = create_model("lenet5", num_classes=5)
    x = torch.randint(0, 256, (6, 1, 32, 32), dtype=torch.uint8)
    norm = {"mean": [0.5], "std": [0.25], "scale": 1 / 255}
    key = feature_cache.feature_key(model, x, norm)
    assert feature_cache.feature_key(model, x.clone(), dict(norm)) == key
    torch.nn.init.zeros_(model.head.weight)  # the head is not part of the features
    assert feature_cache.feature_key(model, x, norm) == key
    x2 = x.clone()
    x2[0, 0, 0, 0] ^= 1
    assert feature_cache.feature_key(model, x2, norm) != key
    assert feature_cache.feature_key(model, x, {**norm, "std": [0.3]}) != key
    with torch.no_grad():
        model.fc[3].bias[0] += 1e-3
    assert feature_cache.feature_key(model, x, norm) != key


def test_features_of_indexed_examples_are_read_by_blocks_with_the_same_key():
    """x with indices (a cache mapped from disk is never gathered whole) gives the key and the
    features of x[indices]; other indices, another key."""
    model = create_model("lenet5", num_classes=5)
    x = torch.randint(0, 256, (1100, 1, 32, 32), dtype=torch.uint8)
    idx = torch.randperm(1100, generator=torch.Generator().manual_seed(0))[:1030]
    norm = {"mean": [0.5], "std": [0.25], "scale": 1 / 255}
    assert feature_cache.feature_key(model, x, norm, idx) == \
        feature_cache.feature_key(model, x[idx], norm)
    assert feature_cache.feature_key(model, x, norm, idx.flip(0)) != \
        feature_cache.feature_key(model, x, norm, idx)
    assert torch.equal(feature_cache.compute_features(model, x, norm, "cpu", indices=idx),
                       feature_cache.compute_features(model, x[idx], norm, "cpu"))


@pytest.mark.slow
def test_head_on_cache_equals_head_without_cache(cli, work):
    source = weights(work / "runs" / "a")
    out, cached = finetune(cli, work, "cached", "--freeze", "all-but-head", "--epochs", "2")
    _, plain = finetune(cli, work, "plain", "--freeze", "all-but-head", "--epochs", "2",
                        "--no-cache")
    assert "freezing 4 of 4" in out
    config = json.loads((work / "runs" / "cached" / "config.json").read_text())
    assert config["transfer"]["feature_cache"] is True
    files = sorted((work / "runs" / ".feature-cache").glob("*.safetensors"))
    assert len(files) == 2  # train and dev
    written = [f.stat().st_mtime_ns for f in files]
    assert cached["head.weight"].shape == (5, 84)
    close(cached["head.weight"], plain["head.weight"], rtol=1e-4, atol=1e-5)
    close(cached["head.bias"], plain["head.bias"], rtol=1e-4, atol=1e-5)
    assert not torch.equal(cached["head.weight"], torch.zeros(5, 84))
    for key in source:
        if not key.startswith("head."):
            assert torch.equal(cached[key], source[key]), key
    _, again = finetune(cli, work, "again", "--freeze", "all-but-head", "--epochs", "2")
    assert torch.equal(again["head.weight"], cached["head.weight"])
    assert [f.stat().st_mtime_ns for f in files] == written  # read from the cache, not rewritten


# -- deepnotes finetune -------------------------------------------------------------------------

def test_finetune_freezes_the_first_groups_and_the_run_evaluates(cli, work):
    source = weights(work / "runs" / "a")
    out, tuned = finetune(cli, work, "n2", "--freeze", "2", "--epochs", "1")
    assert "freezing 2 of 4 layer groups; frozen: conv.0, conv.3" in out
    for key in source:
        if key.startswith("conv."):
            assert torch.equal(tuned[key], source[key]), key
        elif key.startswith("fc."):
            assert not torch.equal(tuned[key], source[key]), key
    assert tuned["head.weight"].shape == (5, 84)
    rc, out, err = cli("evaluate", work / "runs" / "n2")
    assert rc == 0, err
    assert "digit9" in out
    image = next((work / "b" / "digit7").iterdir())
    rc, out, err = cli("predict", work / "runs" / "n2", image, "--top-k", "1")
    assert rc == 0 and "digit" in out, err


def test_train_resume_refuses_a_finetune_run(cli, work):
    finetune(cli, work, "n3", "--freeze", "3", "--epochs", "1")
    rc, _, err = cli("train", "--resume", work / "runs" / "n3", "--epochs", 3)
    assert rc == 2 and "a run made by deepnotes finetune" in err and err.count("\n") == 1


def test_auto_prints_the_rule_and_its_choice(cli, work):
    out, _ = finetune(cli, work, "auto", "--epochs", "1")
    assert "--freeze auto:" in out and "per class" in out and "rule:" in out
    assert "freezing 4 of 4 layer groups" in out  # about 140 digits a class: head only


def test_gradual_unfreezing_thaws_from_the_top(cli, work):
    source = weights(work / "runs" / "a")
    _, tuned = finetune(cli, work, "gradual", "--freeze", "none", "--gradual", "--epochs", "2")
    for key in source:  # epoch 1: the head; epoch 2: fc.3 too; then training ends
        if key.startswith(("conv.", "fc.1")):
            assert torch.equal(tuned[key], source[key]), key
        elif key.startswith("fc.3"):
            assert not torch.equal(tuned[key], source[key]), key
    config = json.loads((work / "runs" / "gradual" / "config.json").read_text())
    assert config["transfer"]["lr_decay"] == 2.6


def test_finetune_a_torchvision_format_weight_file(cli, work, tmp_path):
    model = create_model("lenet5", num_classes=10)
    torch.save(model.state_dict(), tmp_path / "lenet5.pth")
    rc, out, err = cli("finetune", tmp_path / "lenet5.pth", "--model", "lenet5", "--data",
                       work / "b", "--freeze", "3", "--epochs", "1", "--out", tmp_path / "runs",
                       "--quiet")
    assert rc == 0, err
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")]
    tuned = weights(run_dir)
    close(tuned["conv.0.weight"], model.conv[0].weight, rtol=0, atol=0)
    assert tuned["head.weight"].shape == (5, 84)


def test_bad_input_is_one_line_and_leaves_nothing(cli, work, tmp_path):
    other = create_model("lenet5", num_classes=10, in_channels=3)
    save_file(other.state_dict(), tmp_path / "rgb.safetensors")
    mlp = create_model("mlp", num_classes=2, in_channels=64)
    save_file(mlp.state_dict(), tmp_path / "mlp.safetensors")
    out_dir = tmp_path / "runs"
    cases = [
        ([work / "runs" / "a", "--freeze", "9"], "--freeze 9: the model has 4 layer groups"),
        ([work / "runs" / "a", "--freeze", "x"], "--freeze x: expected auto, none"),
        ([tmp_path / "rgb.safetensors", "--model", "lenet5"],
         "conv.0.weight has shape (6, 3, 5, 5), the model expects (6, 1, 5, 5)"),
        ([tmp_path / "mlp.safetensors", "--model", "lenet5"], "weights of another architecture"),
        ([tmp_path / "mlp.safetensors"], "say which network it holds with --model"),
        ([tmp_path / "nothing"], "no such run folder or weights file"),
        ([work / "runs" / "a", "--model", "mlp"], "trains lenet5"),
        ([work / "runs" / "a", "--lr-decay", "0.5"], "--lr-decay 0.5: expected a finite number "
                                                     "in [1, inf) (earlier layers learn"),
        ([work / "runs" / "a", "--lr-decay", "inf"], "--lr-decay inf: expected a finite number"),
    ]
    for args, expected in cases:
        rc, out, err = cli("finetune", *args, "--data", work / "b", "--epochs", "1", "--out",
                           out_dir, "--quiet")
        assert rc == 2, (args, err)
        assert expected in err, (args, err)
        assert err.count("\n") == 1 and "Traceback" not in err
        assert not out_dir.exists() or not [p for p in out_dir.iterdir()
                                            if not p.name.startswith(".")]


def test_finetune_into_an_existing_name_says_overwrite_not_resume(cli, work, tmp_path):
    (tmp_path / "runs" / "taken").mkdir(parents=True)
    rc, _, err = cli("finetune", work / "runs" / "a", "--data", work / "b", "--epochs", "1",
                     "--out", tmp_path / "runs", "--name", "taken", "--quiet")
    assert rc == 2 and err.count("\n") == 1, err
    assert "taken exists; --overwrite to replace it, or choose another name" in err
    assert "--resume" not in err
