"""The model zoo against torchvision: parameter counts, state_dict keys and shapes, small inputs,
the common surface of every registered model (features, head, reset_head, head_prefix,
layer_groups), one training run each, and load_weights.

torchvision is not installed here; its figures are written down (they are the ones its docs and
``torchvision.models`` give), and the resnet18 key list is generated from its known structure.
The big models are built on the meta device: shapes and counts without memory or time.
"""

from __future__ import annotations

import functools

import pytest
import torch
from safetensors.torch import save_file

from deepnotes.errors import DeepnotesError
from deepnotes.models import create_model, list_models, load_weights, model_class
from deepnotes.models.inception import NaiveInception
from deepnotes.models.vgg import CONFIGS

ZOO = [n for n in list_models() if model_class(n).input_kind == "image"]
BN = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]

TORCHVISION_PARAMS = {  # 1000 classes, 3 channels
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808, "vgg11": 132_863_336,
    "vgg16": 138_357_544, "vgg16_bn": 138_365_992, "vgg19_bn": 143_678_248,
    "alexnet": 61_100_840, "googlenet": 6_624_904,
}


def meta_model(name: str, num_classes: int = 1000, in_channels: int = 3, **kwargs):
    with torch.device("meta"):
        return create_model(name, num_classes=num_classes, in_channels=in_channels, **kwargs)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def shapes(model) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_parameter_counts_equal_torchvision(name):
    assert n_params(meta_model(name)) == TORCHVISION_PARAMS[name]


def test_lenet5_and_googlenet_with_aux_counts():
    assert n_params(create_model("lenet5", num_classes=10, in_channels=1)) == 61_706
    assert n_params(meta_model("googlenet", aux_logits=True)) == 13_004_888


# the common surface of every registered model

ALL = list_models()
SLOW = {"vgg13", "vgg16", "vgg19", "vgg13_bn", "vgg16_bn", "vgg19_bn", "resnet101", "resnet152"}
VOCAB = 12  # in_channels of the token models: the input vocabulary


def kind(name: str) -> str:
    """The first kind of input the model reads: image, table, tokens, lm, tags or pairs."""
    k = model_class(name).input_kind
    return k[0] if isinstance(k, tuple) else k


def example(name: str, device="cpu", channels: int = 1) -> tuple[int, tuple, tuple]:
    """(in_channels, a tiny input as forward's arguments, the leading shape of the output)."""
    ids = torch.tensor([[5, 6, 7, 8, 9, 4], [3, 4, 5, 0, 0, 0]], device=device)  # (B, T), 0 pads
    if kind(name) == "image":  # the smallest the architecture takes: input_size
        s = model_class(name).input_size
        return channels, (torch.randn(2, channels, s, s, device=device),), (2,)
    if kind(name) == "table":
        return 8, (torch.randn(2, 8, device=device),), (2,)
    if kind(name) == "pairs":  # decoder inputs y_in < num_classes, teacher forcing
        y_in = torch.tensor([[2, 4, 3, 4], [2, 3, 0, 0]], device=device)
        return VOCAB, (ids, y_in), (2, 4)
    return VOCAB, (ids,), (2, 6) if kind(name) in ("lm", "tags") else (2,)


def build(name: str, num_classes: int, device="cpu", channels: int = 1, **kwargs):
    """The model on ``device`` (built there), an input for it, the output's leading shape."""
    in_channels, args, lead = example(name, device, channels)
    with torch.device(device):
        model = create_model(name, num_classes=num_classes, in_channels=in_channels, **kwargs)
    return model, args, lead


@functools.cache
def meta_zoo(name: str, **kwargs):
    """A read-only model built on the meta device (no memory, no initialisation time)."""
    return meta_model(name, num_classes=7, in_channels=example(name)[0], **kwargs)


@pytest.mark.parametrize("name", ALL)
def test_every_model_has_the_common_surface(name):
    # image and table models on the meta device: shapes without memory or time; token models
    # need real ids (their lengths are read), and they are small
    device = "cpu" if model_class(name).input_kind not in ("image", "table") else "meta"
    model, args, lead = build(name, 7, device, channels=3)  # 1 channel: the real input below
    assert model(*args).shape == (*lead, 7)
    assert model.features(*args).shape == (*lead, model.head.in_features)
    keys, had_bias = set(model.state_dict()), model.head.bias is not None
    model.to(torch.float64)
    model.reset_head(4)  # outside the meta context: the new head must follow the old one
    assert model.head.out_features == 4 and (model.head.bias is not None) == had_bias
    assert model.head.weight.device.type == device and model.head.weight.dtype == torch.float64
    args = tuple(a.double() if a.is_floating_point() else a for a in args)
    assert model(*args).shape == (*lead, 4)
    assert set(model.state_dict()) == keys  # the head is a view on an existing layer, no new keys


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in ALL])
def test_the_head_reads_the_features_on_real_input(name):  # grey images, 1 channel
    torch.manual_seed(0)
    model, args, lead = build(name, 5)
    model.eval()
    with torch.no_grad():
        z = model(*args)  # logits z: (*lead, 5)
        assert z.shape == (*lead, 5) and torch.isfinite(z).all()
        assert torch.equal(model.head(model.features(*args)), z)
        old = model.head
        model.reset_head(5)
        assert model.head is not old and not torch.equal(model.head.weight, old.weight)
        model.reset_head(3)
        z = model(*args)
    assert z.shape == (*lead, 3) and torch.isfinite(z).all()


@pytest.mark.parametrize("name", ["lenet5", "fastnet", "mlp", "charlm"])
def test_a_reset_head_in_float64_trains(name):
    torch.manual_seed(0)
    model, args, lead = build(name, 5)
    model.double().reset_head(3)
    args = tuple(a.double() if a.is_floating_point() else a for a in args)
    z = model(*args)
    assert z.dtype == torch.float64 and z.shape == (*lead, 3)
    z.sum().backward()
    assert model.head.weight.grad is not None and model.head.weight.grad.dtype == torch.float64


def test_fastnet_keeps_its_head_without_bias_and_googlenet_resets_its_aux_heads():
    fastnet = meta_zoo("fastnet")
    assert fastnet.head.bias is None
    model = meta_model("googlenet", num_classes=7, aux_logits=True).to(torch.float64)
    model.reset_head(4)
    for aux in (model.aux1, model.aux2):
        assert aux.fc2.out_features == 4 and aux.fc2.weight.dtype == torch.float64
        assert aux.fc2.weight.device.type == "meta"


# layer groups: the names transfer.group_names gave before the model surface had them

GROUPS = {
    "lenet5": ["conv.0", "conv.3", "fc.1", "fc.3"],  # conv, act, pool | conv, act, pool | ...
    "lenet5_relu": ["conv.0", "conv.3", "fc.1", "fc.3"],
    "mlp": ["body.0", "body.2"],
    "fastnet": ["body.0", "body.3", "body.7", "body.10", "body.14", "body.17", "body.21"],
    "alexnet": ["features.0", "features.3", "features.6", "features.8", "features.10",
                "classifier.1", "classifier.4"],
    "resnet18": ["conv1", "layer1", "layer2", "layer3", "layer4"],
    "resnet152": ["conv1", "layer1", "layer2", "layer3", "layer4"],
    "googlenet": ["conv1", "conv2", "conv3", "inception3a", "inception3b", "inception4a",
                  "inception4b", "inception4c", "inception4d", "inception4e", "inception5a",
                  "inception5b"],
    "rnn": ["rnn"], "lstm": ["rnn"],
    "charlm": ["embed", "rnn"],
    "tagger": ["embed", "rnn"],
    "seq2seq": ["embed_x", "encoder", "bridge", "embed_y", "decoder", "attend", "combine"],
}
HEAD_PREFIX = {"lenet5": "head.", "fastnet": "head.", "resnet50": "fc.", "googlenet": "fc.",
               "vgg16_bn": "classifier.6.", "alexnet": "classifier.6.", "seq2seq": "head."}


def names(model) -> list[str]:
    return [name for name, _ in model.layer_groups()]


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_layer_group_names(name):
    assert names(meta_zoo(name)) == GROUPS[name]


@pytest.mark.parametrize("name", [n for n in ALL if n.startswith("vgg")])
def test_vgg_has_a_group_a_convolution_and_a_group_a_hidden_fc_layer(name):
    batch_norm, expected, i = name.endswith("_bn"), [], 0
    for v in CONFIGS[int(name[3:5])]:  # features.i: conv [bn] relu, or a pool
        expected += [] if v == "M" else [f"features.{i}"]
        i += 1 if v == "M" else 3 if batch_norm else 2
    assert names(meta_zoo(name)) == [*expected, "classifier.0", "classifier.3"]


@pytest.mark.parametrize("name", sorted(HEAD_PREFIX))
def test_head_prefix_names_the_heads_keys(name):
    model = meta_zoo(name)
    prefix = model.head_prefix()
    assert prefix == HEAD_PREFIX[name]
    assert [k for k in model.state_dict() if k.startswith(prefix)] == [
        prefix + k for k in model.head.state_dict()]


@pytest.mark.parametrize("name, kwargs", [(n, {}) for n in ALL] + [
    ("googlenet", {"aux_logits": True})])
def test_every_parameter_but_the_heads_is_in_exactly_one_group(name, kwargs):
    model = meta_zoo(name, **kwargs)
    grouped = [id(p) for _, modules in model.layer_groups() for m in modules
               for p in m.parameters()]
    outputs = [model.head, *(getattr(model, a) for a in model.aux_heads)]
    heads = {id(p) for m in outputs if m is not None for p in m.parameters()}
    assert all(modules for _, modules in model.layer_groups())
    assert len(grouped) == len(set(grouped))  # none in two groups
    assert set(grouped) == {id(p) for p in model.parameters()} - heads
    assert heads and not heads & set(grouped)


@pytest.mark.parametrize("name, kwargs", [
    ("lenet5", {}), ("resnet18", {"small_input": True}), ("vgg11", {}), ("alexnet", {}),
    ("googlenet", {}),
])
def test_a_few_sgd_steps_lower_the_loss_at_input_size(name, kwargs):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, in_channels=1, **kwargs)
    s = model.input_size
    x, y = torch.randn(4, 1, s, s), torch.tensor([0, 1, 2, 0])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(4):
        torch.manual_seed(1)  # the same dropout masks at every step
        loss = torch.nn.functional.cross_entropy(model(x), y)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < losses[0], losses


def resnet18_keys() -> list[str]:
    """torchvision's resnet18 state_dict keys, in order, from its structure."""
    keys = ["conv1.weight", *(f"bn1.{b}" for b in BN)]
    for stage in range(1, 5):
        for block in range(2):
            p = f"layer{stage}.{block}."
            keys += [p + "conv1.weight", *(f"{p}bn1.{b}" for b in BN)]
            keys += [p + "conv2.weight", *(f"{p}bn2.{b}" for b in BN)]
            if stage > 1 and block == 0:
                keys += [p + "downsample.0.weight", *(f"{p}downsample.1.{b}" for b in BN)]
    return keys + ["fc.weight", "fc.bias"]


def test_resnet18_keys_are_torchvisions():
    sd = meta_model("resnet18").state_dict()
    assert list(sd) == resnet18_keys() and len(sd) == 122
    assert list(sd)[:8] == ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean",
                            "bn1.running_var", "bn1.num_batches_tracked",
                            "layer1.0.conv1.weight", "layer1.0.bn1.weight"]


def test_small_input_changes_only_the_stems_shape():
    big, small = shapes(meta_model("resnet18")), shapes(meta_model("resnet18", small_input=True))
    assert list(big) == list(small)
    assert big["conv1.weight"] == (64, 3, 7, 7) and small["conv1.weight"] == (64, 3, 3, 3)
    assert {k for k in big if big[k] != small[k]} == {"conv1.weight"}
    model = create_model("resnet18", num_classes=10, in_channels=1, small_input=True)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)  # Fashion-MNIST, not resized


@pytest.mark.parametrize("name, expected", [
    ("resnet50", {"layer1.0.conv3.weight": (256, 64, 1, 1), "fc.weight": (1000, 2048),
                  "layer1.0.downsample.0.weight": (256, 64, 1, 1),
                  "layer4.2.bn3.running_var": (2048,)}),
    ("vgg16", {"features.0.weight": (64, 3, 3, 3), "features.28.weight": (512, 512, 3, 3),
               "classifier.0.weight": (4096, 25088), "classifier.6.weight": (1000, 4096)}),
    ("vgg16_bn", {"features.0.bias": (64,), "features.1.running_var": (64,),
                  "features.40.weight": (512, 512, 3, 3), "features.41.running_var": (512,),
                  "classifier.6.bias": (1000,)}),
    ("alexnet", {"features.0.weight": (64, 3, 11, 11), "features.10.weight": (256, 256, 3, 3),
                 "classifier.1.weight": (4096, 9216), "classifier.6.weight": (1000, 4096)}),
    ("googlenet", {"conv1.conv.weight": (64, 3, 7, 7), "conv1.bn.running_mean": (64,),
                   "inception3a.branch1.conv.weight": (64, 192, 1, 1),
                   "inception3a.branch3.1.conv.weight": (32, 16, 3, 3),
                   "inception5b.branch4.1.conv.weight": (128, 832, 1, 1),
                   "fc.weight": (1000, 1024)}),
])
def test_spot_keys_and_shapes_are_torchvisions(name, expected):
    got = shapes(meta_model(name))
    assert {k: got.get(k) for k in expected} == expected
    assert not any(k.startswith("head.") for k in got)


def test_googlenet_convs_have_no_bias_and_aux_is_optional():
    model = meta_model("googlenet", aux_logits=True)
    keys = set(model.state_dict())
    assert "conv1.conv.bias" not in keys and model.conv1.bn.eps == 0.001
    assert {"aux1.fc1.weight", "aux2.conv.conv.weight", "aux2.fc2.bias"} <= keys
    assert not any(k.startswith("aux") for k in meta_model("googlenet").state_dict())


def test_googlenet_forward_with_aux_on_a_small_image():
    model = create_model("googlenet", num_classes=5, in_channels=1, aux_logits=True)
    logits, aux1, aux2 = model.forward_with_aux(torch.randn(2, 1, 32, 32))
    assert logits.shape == aux1.shape == aux2.shape == (2, 5)


def test_naive_inception_concatenates_the_branches_and_keeps_n_h_n_w():
    module = NaiveInception(16, n_1x1=4, n_3x3=8, n_5x5=2)
    out = module(torch.randn(2, 16, 9, 7))  # (B, n_C, n_H, n_W), odd sizes
    assert module.out_channels == 4 + 8 + 2 + 16
    assert out.shape == (2, 30, 9, 7)


# load_weights


class NotWeights:
    """A custom object: unpickling it would need code, so .pth files holding one are refused."""


def assert_same_weights(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_safetensors_round_trip(tmp_path):
    torch.manual_seed(0)
    source = create_model("resnet18", num_classes=10, in_channels=1, small_input=True)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()},
              tmp_path / "w.safetensors")
    target = create_model("resnet18", num_classes=10, in_channels=1, small_input=True)
    assert load_weights(target, tmp_path / "w.safetensors") is target
    assert_same_weights(source, target)
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(source.eval()(x), target.eval()(x))


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "module."])
def test_pth_round_trip_and_unwrapping(tmp_path, wrap):
    torch.manual_seed(0)
    source = create_model("googlenet", num_classes=4, in_channels=1)
    sd = source.state_dict()
    obj = {"plain": sd, "state_dict": {"state_dict": sd, "epoch": 3}, "model": {"model": sd},
           "module.": {f"module.{k}": v for k, v in sd.items()}}[wrap]
    torch.save(obj, tmp_path / "w.pth")
    target = load_weights(create_model("googlenet", num_classes=4, in_channels=1),
                          tmp_path / "w.pth")
    assert_same_weights(source, target)


def test_a_pickled_custom_object_is_refused(tmp_path):
    torch.save({"conv1.weight": torch.zeros(1), "extra": NotWeights()}, tmp_path / "evil.pth")
    with pytest.raises(DeepnotesError, match="refused.*NotWeights.*could run code") as info:
        load_weights(create_model("lenet5"), tmp_path / "evil.pth")
    assert "evil.pth" in str(info.value) and "\n" not in str(info.value)


def test_another_architecture_names_missing_and_unexpected_keys(tmp_path):
    torch.save(create_model("resnet18", num_classes=10).state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(DeepnotesError) as info:
        load_weights(create_model("lenet5", num_classes=10), tmp_path / "resnet.pth")
    msg = str(info.value)
    assert "resnet.pth" in msg and "missing" in msg and "unexpected" in msg and "\n" not in msg
    assert "'conv.0.weight'" in msg and "'conv1.weight'" in msg


def test_a_shape_mismatch_names_the_key(tmp_path):
    model = create_model("resnet18", num_classes=10, in_channels=1, small_input=True)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    target = create_model("resnet18", num_classes=5, in_channels=1, small_input=True)
    with pytest.raises(DeepnotesError, match=r"fc\.weight has shape \(10, 512\), the model "
                                             r"expects \(5, 512\)"):
        load_weights(target, tmp_path / "w.pt")


def test_torchvision_googlenet_file_loads_without_aux_and_old_files_without_counters(tmp_path):
    source = create_model("googlenet", num_classes=3, in_channels=1, aux_logits=True)
    sd = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(sd, tmp_path / "googlenet.pth")
    target = load_weights(create_model("googlenet", num_classes=3, in_channels=1),
                          tmp_path / "googlenet.pth")
    assert torch.equal(target.fc.weight, source.fc.weight)


@pytest.mark.parametrize("name, content, match", [
    ("w.pth", b"not a zip or a pickle", "corrupt weights file"),
    ("w.safetensors", b"\x00" * 20, "corrupt weights file"),
    ("w.npz", b"", "unknown weights format"),
])
def test_bad_files_are_one_line_errors(tmp_path, name, content, match):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DeepnotesError, match=match):
        load_weights(create_model("lenet5"), tmp_path / name)
    with pytest.raises(DeepnotesError, match="no such weights file"):
        load_weights(create_model("lenet5"), tmp_path / "missing.pth")
