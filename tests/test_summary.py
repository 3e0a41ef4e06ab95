"""``summarize`` / ``deepnotes summary``: shapes agree with a forward pass, counts with the notes.

Every registered model is checked against shapes recorded by a separate hook in this file, at its
default size. Models too costly for a CPU test (VGG's 100M+ parameters take seconds to initialise)
run on the meta device instead, which propagates shapes with neither memory nor arithmetic; a
test holds the meta device's rows equal to the CPU's. LeNet-5 is checked against the
notes' numbers: 28x28x6, 14x14x6, 10x10x16, 5x5x16, 120, 84, 10.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from conftest import run_cli
from deepnotes.errors import DeepnotesError
from deepnotes.models import create_model, list_models, model_class
from deepnotes.models.summary import format_table, summarize, totals
from deepnotes.nn import BatchNorm2d, Conv2d, MaxPool2d

MAX_MACS = 1e9  # multiply-adds of one forward pass a test may spend on a CPU
MAX_PARAMS = 15e6  # parameters a test may initialise


def default_shape(name: str) -> tuple[int, ...]:
    """What ``deepnotes summary NAME`` reads without --input (30 features for a table)."""
    cls = model_class(name)
    if cls.input_kind == "table":
        return (30,)
    return (1, cls.input_size, cls.input_size)


def build(name: str, shape: tuple[int, ...]) -> nn.Module:
    return create_model(name, num_classes=7, in_channels=shape[0])


def device_for(name: str, shape: tuple[int, ...]) -> str:
    """Where to test a model: the CPU if it is cheap enough to run for real, else the meta device
    (shapes only, no arithmetic); the cost itself is counted on the meta device."""
    try:
        with torch.device("meta"):
            model = build(name, shape)
        cost = totals(summarize(model, shape), model)
    except Exception:  # a model the meta device cannot run is tested for real
        return "cpu"
    return "cpu" if cost["macs"] <= MAX_MACS and cost["parameters"] <= MAX_PARAMS else "meta"


def recorded_shapes(model: nn.Module, shape: tuple[int, ...]):
    """Run summarize while our own hooks note each leaf's output shape and the model's output."""
    seen, handles = [], []
    for name, module in model.named_modules():
        if not list(module.children()) and not isinstance(module, (nn.Identity, nn.Sequential)):
            hook = (lambda n: lambda m, i, o: seen.append((n, list(o.shape[1:]))))(name)
            handles.append(module.register_forward_hook(hook))
    out = []
    handles.append(model.register_forward_hook(lambda m, i, o: out.append(tuple(o.shape))))
    rows = summarize(model, shape)
    for handle in handles:
        handle.remove()
    return rows, seen, out[0]


# ---------------------------------------------------------------- every registered model


LAYERED = [n for n in list_models() if not getattr(model_class(n), "sequence", False)]


def test_sequence_models_are_refused_in_one_line(capsys):
    rc, _, err = run_cli(capsys, "summary", "lstm")
    assert rc == 2 and "a sequence model" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("name", LAYERED)
def test_rows_agree_with_a_forward_pass(name):
    shape = default_shape(name)
    with torch.device(device_for(name, shape)):
        model = build(name, shape)
    rows, seen, out = recorded_shapes(model, shape)
    assert [(r["name"], r["shape"]) for r in rows] == seen
    assert rows[-1]["shape"] == list(out[1:]) == [7]
    assert totals(rows, model)["parameters"] == sum(p.numel() for p in model.parameters())
    assert all(r["macs"] >= 0 and r["parameters"] >= 0 for r in rows)


def test_meta_device_gives_the_same_rows():
    shape = (1, 32, 32)
    torch.manual_seed(0)
    real = summarize(build("lenet5", shape), shape)
    with torch.device("meta"):
        meta = summarize(build("lenet5", shape), shape)
    assert meta == real


# ---------------------------------------------------------------- the notes' numbers


def test_lenet5_matches_the_notes():
    model = create_model("lenet5")
    rows = summarize(model, (1, 32, 32))
    shaped = [r for r in rows if r["type"] in ("Conv2d", "AvgPool2d", "Linear")]
    assert [r["output"] for r in shaped] == ["28 x 28 x 6", "14 x 14 x 6", "10 x 10 x 16",
                                             "5 x 5 x 16", "120", "84", "10"]
    conv1, pool1 = shaped[0], shaped[1]
    assert conv1["name"] == "conv.0" and conv1["input"] == "32 x 32 x 1"
    assert (conv1["f"], conv1["p"], conv1["s"]) == (5, 0, 1)
    assert (pool1["f"], pool1["p"], pool1["s"]) == (2, 0, 2)
    assert conv1["macs"] == 28 * 28 * 6 * 5 * 5 * 1 == 117_600
    assert conv1["parameters"] == 6 * 5 * 5 + 6
    assert shaped[4]["macs"] == 400 * 120
    assert [r["f"] for r in rows if r["type"] in ("Tanh", "Linear", "Flatten")] == [None] * 8
    assert totals(rows, model) == {"parameters": 61_706, "trainable": 61_706, "macs": 416_520}


class Block(nn.Module):
    """A residual block with a shared ReLU, "same" padding, groups, stride 2 and extras."""

    def __init__(self):
        super().__init__()
        self.conv1 = Conv2d(4, 8, 3, padding="same", bias=False)
        self.bn = BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.conv2 = Conv2d(8, 8, 3, padding=1, groups=2, bias=False)
        self.skip = nn.Identity()
        self.down = Conv2d(8, 8, 2, stride=2, padding="same")
        self.pool = MaxPool2d(3)
        self.gap = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5))
        self.head = nn.Linear(8, 3)
        self.scale = nn.Parameter(torch.ones(1))  # held by no leaf

    def forward(self, x):
        a = self.relu(self.bn(self.conv1(x)))  # (B, 8, 9, 9)
        a = self.relu(self.conv2(a) + self.skip(a))
        return self.head(self.gap(self.pool(self.down(a)))) * self.scale


def test_residual_block_rows():
    model = Block()
    rows = summarize(model, (4, 9, 9))
    names = [r["name"] for r in rows]
    assert names == ["conv1", "bn", "relu", "conv2", "relu", "down", "pool", "gap.0", "gap.1",
                     "gap.2", "head"]
    by = {r["name"]: r for r in rows}
    assert by["conv1"]["p"] == "same" and by["conv1"]["output"] == "9 x 9 x 8"
    assert by["conv1"]["macs"] == 9 * 9 * 8 * 3 * 3 * 4
    assert by["conv2"]["macs"] == 9 * 9 * 8 * 3 * 3 * 8 // 2  # groups=2
    assert (by["down"]["f"], by["down"]["p"], by["down"]["s"]) == (2, "same", 2)
    assert by["down"]["output"] == "5 x 5 x 8"  # ceil(9 / 2)
    assert (by["pool"]["f"], by["pool"]["s"], by["pool"]["output"]) == (3, 3, "1 x 1 x 8")
    assert by["bn"]["macs"] == 0 and by["bn"]["parameters"] == 16
    assert by["gap.0"]["f"] is None and by["gap.1"]["output"] == "8"
    total = totals(rows, model)
    assert total["parameters"] == sum(p.numel() for p in model.parameters())
    assert totals(rows)["parameters"] == total["parameters"] - 1  # the rows miss `scale`
    assert total["macs"] == sum(r["macs"] for r in rows)


def test_rectangular_filters_show_as_pairs():
    model = nn.Sequential(nn.Conv2d(1, 2, (3, 1), stride=(2, 1), padding=(1, 0)))
    (row,) = summarize(model, (1, 8, 5))
    assert (row["f"], row["p"], row["s"]) == ((3, 1), (1, 0), (2, 1))
    assert row["output"] == "4 x 5 x 2"
    assert "3x1" in format_table([row], totals([row]))


def test_summarize_restores_the_model():
    model = create_model("lenet5_relu").train()
    summarize(model, (1, 32, 32))
    assert model.training
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_too_small_an_input_names_the_layer():
    model = create_model("lenet5")
    with pytest.raises(DeepnotesError, match=r"conv\.0.*floor\(\(4 \+ 2\*0 - 5\) / 1\)"):
        summarize(model, (1, 4, 4))
    with pytest.raises(DeepnotesError, match=r"conv\.3"):  # 12 -> 8 -> 4 < f = 5
        summarize(model, (1, 12, 12))
    with pytest.raises(DeepnotesError, match=r"fc\.1 \(Linear\).*n = 400 .*got 2704"):
        summarize(model, (1, 64, 64))
    assert not model.conv[0]._forward_hooks


@pytest.mark.parametrize("shape", [(), (0, 32, 32), ("a",), None])
def test_bad_input_shape(shape):
    with pytest.raises(DeepnotesError, match="input_shape"):
        summarize(create_model("lenet5"), shape)


def test_table_is_aligned_with_a_totals_line():
    rows = summarize(create_model("lenet5"), (1, 32, 32))
    lines = format_table(rows, totals(rows)).splitlines()
    header, body, total = lines[0], lines[2:-2], lines[-1]
    assert header.split()[:4] == ["layer", "type", "input", "output"]
    assert lines[1] == lines[-2] == "-" * len(header)
    assert all(len(line) == len(header) for line in body)  # MACs right-aligned at the end
    end = header.index("parameters") + len("parameters")
    assert all(line[:end].endswith(r) for line, r in zip(body, (f"{r['parameters']:,}"
                                                                 for r in rows)))
    assert total.split() == ["total", "61,706", "416,520"]


# ---------------------------------------------------------------- the command


def test_cli_prints_a_table(capsys):
    rc, out, err = run_cli(capsys, "summary", "lenet5")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == "lenet5: input 32 x 32 x 1, 10 classes"
    assert lines[-1].split() == ["total", "61,706", "416,520"]
    assert any(line.split()[:4] == ["conv.0", "Conv2d", "32", "x"] for line in lines)


@pytest.mark.parametrize("text", ["3x32x32", "3,32,32", "3 x 32 x 32"])
def test_cli_input_sets_the_channels(capsys, text):
    rc, out, err = run_cli(capsys, "summary", "lenet5", "--input", text, "--num-classes", "5",
                           "--json")
    assert rc == 0, err
    result = json.loads(out)
    first, last = result["layers"][0], result["layers"][-1]
    assert result["input"] == [3, 32, 32]
    assert first["input"] == "32 x 32 x 3" and first["parameters"] == 3 * 6 * 25 + 6
    assert first["macs"] == 28 * 28 * 6 * 5 * 5 * 3
    assert last["output"] == "5"
    assert result["totals"]["parameters"] == 61_706 + 300 - 5 * 84 - 5


def test_cli_table_model(capsys):
    rc, out, err = run_cli(capsys, "summary", "mlp", "--input", "30")
    assert rc == 0, err
    assert out.splitlines()[0] == "mlp: input 30, 10 classes"


def refused(capsys, *args) -> str:
    rc, out, err = run_cli(capsys, "summary", *args)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error:"), (rc, err)
    assert "Traceback" not in out + err
    return lines[0]


@pytest.mark.parametrize("text", ["abc", "3x32", "0x32x32", "3x32x32x1", "", "3x-1x4"])
def test_cli_bad_input(capsys, text):
    line = refused(capsys, "lenet5", "--input", text)
    assert line == f"error: --input {text!r}: expected C x H x W such as 3x224x224"


def test_cli_bad_table_input(capsys):
    assert "number of features" in refused(capsys, "mlp", "--input", "1x28x28")
    assert "--input N" in refused(capsys, "mlp")


def test_cli_unknown_model(capsys):
    line = refused(capsys, "lenet")
    assert "'lenet'" in line and all(name in line for name in list_models())


@pytest.mark.parametrize("name, text, needle", [
    ("lenet5", "1x4x4", "--model lenet5 reads 32 pixels a side; pick another size, or a model "
                        "with adaptive pooling (none reads so few pixels)"),
    ("lenet5", "1x32x40", "--model lenet5 reads 32 pixels a side"),
    ("lenet5", "1x8x8", "that reads it (fastnet)"),
    ("resnet18", "3x2x2", "--model resnet18 reads at least 32 pixels a side"),
    ("resnet18", "3x40x40", None), ("googlenet", "3x96x64", None)])
def test_cli_input_the_model_cannot_read(capsys, name, text, needle):
    """What ``train --image-size`` refuses (:func:`deepnotes.models.check_side`), and no more;
    the models suggested instead read the size and are not the one refused."""
    if needle is None:
        assert run_cli(capsys, "summary", name, "--input", text)[0] == 0
        return
    line = refused(capsys, name, "--input", text)
    assert line.startswith(f"error: --input {text}: ") and needle in line


def test_check_side_suggests_only_models_that_read_the_size():
    from deepnotes.errors import DeepnotesError
    from deepnotes.models import check_side, model_class

    with pytest.raises(DeepnotesError) as e:
        check_side("resnet18", 16, "--image-size 16")
    suggested = e.value.args[0].split("(")[-1].rstrip(")").split(", ")
    assert suggested == ["fastnet"]
    for name in ("fastnet", "resnet18", "vgg11", "googlenet", "alexnet"):
        side = model_class(name).min_input_size
        check_side(name, side, "x")  # its least size reads
        with pytest.raises(DeepnotesError, match=f"reads at least {side} pixels"):
            check_side(name, side - 1, "x")


def test_cli_bad_num_classes(capsys):
    assert "--num-classes 1: expected an integer from 2" in refused(capsys, "lenet5",
                                                                   "--num-classes", "1")
    assert "--num-classes 99999999999" in refused(capsys, "lenet5", "--num-classes",
                                                  "99999999999")
