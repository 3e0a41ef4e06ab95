"""The model zoo against torchvision: parameter counts, state_dict keys and shapes, small inputs,
the common surface (features, head, reset_head), one training run each, and load_weights.

torchvision is not installed here; its figures are written down (they are the ones its docs and
``torchvision.models`` give), and the resnet18 key list is generated from its known structure.
The big models are built on the meta device: shapes and counts without memory or time.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from deepnotes.errors import DeepnotesError
from deepnotes.models import create_model, list_models, load_weights, model_class
from deepnotes.models.inception import NaiveInception

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


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("name", ZOO)
def test_forward_at_input_size_and_the_common_surface(name, in_channels):
    model = meta_model(name, num_classes=7, in_channels=in_channels)
    s = model.input_size
    x = torch.empty(2, in_channels, s, s, device="meta")  # (B, n_C, n_H, n_W)
    assert model(x).shape == (2, 7)
    assert model.features(x).shape == (2, model.head.in_features)
    keys = set(model.state_dict())
    with torch.device("meta"):
        model.reset_head(4)
    assert model(x).shape == (2, 4) and model.head.out_features == 4
    assert set(model.state_dict()) == keys  # the head is a view on an existing layer, no new keys


def test_real_forward_of_a_bottleneck_resnet_on_a_grey_image():
    model = create_model("resnet50", num_classes=5, in_channels=1).eval()
    with torch.no_grad():
        z = model(torch.randn(2, 1, 32, 32))
    assert z.shape == (2, 5) and torch.isfinite(z).all()


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
