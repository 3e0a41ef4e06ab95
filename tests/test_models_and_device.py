"""The models of this issue, the optimiser and schedule registry, and the device choice."""

from __future__ import annotations

import math

import pytest
import torch

from deepnotes.device import list_devices, resolve_device, set_visible_gpus
from deepnotes.errors import DeepnotesError
from deepnotes.models import create_model
from deepnotes.optim import create_optimizer, learning_rate


@pytest.mark.parametrize("name", ["lenet5", "lenet5_relu", "mlp"])  # the zoo: test_model_zoo.py
def test_small_models_have_the_common_surface_and_learn(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, in_channels=2)
    shape = (8, 2, model.input_size, model.input_size) if model.input_kind == "image" else (8, 2)
    x, y = torch.randn(shape), torch.arange(8) % 3
    assert model(x).shape == (8, 3)
    assert model.features(x).shape[1] == model.head.in_features
    optimizer = create_optimizer("adam", model.parameters(), 1e-2)
    first = None
    for _ in range(20):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first
    model.reset_head(5)
    assert model(x).shape == (8, 5)


def test_lenet5_is_the_classic_size():
    model = create_model("lenet5", num_classes=10, in_channels=1)
    assert sum(p.numel() for p in model.parameters()) == 61_706


def test_unknown_names_suggest_a_close_one():
    with pytest.raises(DeepnotesError, match="did you mean 'lenet5'"):
        create_model("lenet")
    with pytest.raises(DeepnotesError, match="did you mean 'adam'"):
        create_optimizer("adm", [torch.zeros(1, requires_grad=True)], 0.1)


def test_onecycle_warms_up_peaks_and_decays():
    rates = [learning_rate("onecycle", 0.1, s, 100) for s in range(100)]
    peak = max(rates)
    assert math.isclose(peak, 0.1) and rates[0] < 0.01 and rates[-1] < 0.001
    assert rates.index(peak) == 25
    assert all(a <= b for a, b in zip(rates[:25], rates[1:26]))
    assert all(a >= b for a, b in zip(rates[25:], rates[26:]))
    assert learning_rate("constant", 0.1, 50, 100) == 0.1


def test_cpu_is_always_there():
    assert resolve_device("cpu") == torch.device("cpu")
    assert list_devices()[0]["device"] == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("spec", ["cuda", "cuda:1"])
def test_cuda_where_there_is_none_is_a_clear_error(spec):
    with pytest.raises(DeepnotesError, match="no CUDA GPU"):
        resolve_device(spec)
    assert resolve_device("auto").type in ("cpu", "mps")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_missing_gpu_index_lists_the_visible_ones():
    n = torch.cuda.device_count()
    with pytest.raises(DeepnotesError, match="visible"):
        resolve_device(f"cuda:{n}")


def test_gpus_sets_cuda_visible_devices(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    set_visible_gpus("1, 2")
    import os

    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1,2"
    with pytest.raises(DeepnotesError, match="--gpus"):
        set_visible_gpus("one")
