"""The model surface (:class:`deepnotes.models.network.Network`) on small hand-made networks:
where reset_head puts the new head, what it keeps, the layer-group rule step by step, and that
every registered model has it once (the zoo-wide checks are in test_model_zoo.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepnotes.errors import DeepnotesError
from deepnotes.models import MODELS
from deepnotes.models.network import Network
from deepnotes.nn import BatchNorm1d


class Toy(Network):
    """flatten | body: linear, BN, ReLU, dropout, linear, ReLU, dropout | block | out: drop, head.

    The head is the second layer of a container, as VGG's is."""

    opened = ("body", "out")

    def __init__(self, bias: bool = True):
        super().__init__()
        self.pre = nn.Flatten()
        self.body = nn.Sequential(nn.Linear(4, 4), BatchNorm1d(4), nn.ReLU(), nn.Dropout(0.5),
                                  nn.Linear(4, 4), nn.ReLU(), nn.Dropout(0.5))
        self.block = nn.Sequential(nn.Linear(4, 4), nn.ReLU())  # not opened: one layer
        self.out = nn.Sequential(nn.Dropout(0.5), nn.Linear(4, 3, bias=bias))

    @property
    def head(self) -> nn.Linear:
        return self.out[1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.out[0](self.block(self.body(self.pre(x))))  # (B, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, 3)


def test_reset_head_replaces_the_layer_where_it_lives():
    model = Toy()
    old = model.head
    model.reset_head(5)
    assert model.out[1] is model.head and model.head is not old
    assert model.head_prefix() == "out.1."
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if k.startswith("out.")}
    assert shapes == {"out.1.weight": (5, 4), "out.1.bias": (5,)}
    assert model(torch.randn(2, 4)).shape == (2, 5)


@pytest.mark.parametrize("bias", [True, False])
def test_reset_head_keeps_bias_dtype_and_device(bias):
    with torch.device("meta"):
        model = Toy(bias=bias).to(torch.float64)
    model.reset_head(2)  # the default device here is the CPU: the head must stay on meta
    head = model.head
    assert (head.bias is not None) == bias and head.weight.dtype == torch.float64
    assert head.weight.device.type == "meta" and (head.in_features, head.out_features) == (4, 2)


@pytest.mark.parametrize("bad", [0, -3, 2.0, True, "10"])
def test_reset_head_names_a_bad_class_count(bad):
    with pytest.raises(DeepnotesError, match=rf"reset_head\({bad!r}\): expected a positive"):
        Toy().reset_head(bad)


def test_a_head_outside_the_model_and_a_missing_features_are_named():
    class Detached(Network):
        head = nn.Linear(2, 2)  # a class attribute, not one of the instance's modules

    with pytest.raises(DeepnotesError, match="Detached: its head is not one of its modules"):
        Detached().reset_head(3)
    with pytest.raises(NotImplementedError, match="Detached does not define features"):
        Detached().features(torch.zeros(1, 2))


def test_layer_groups_follow_the_rule():
    model = Toy()
    assert [name for name, _ in model.named_layers()] == ["pre", *(f"body.{i}" for i in range(7)),
                                                          "block", "out.0"]
    groups = model.layer_groups()
    body = model.body
    assert [name for name, _ in groups] == ["body.0", "body.4", "block"]
    # leading layers without weights join the first group, named after its linear layer; batch
    # norm does not start a group; dropout does (it feeds the next layer)
    assert groups[0][1] == [model.pre, body[0], body[1], body[2]]
    assert groups[1][1] == [body[3], body[4], body[5]]
    assert groups[2][1][:2] == [body[6], model.block]
    # the head's dropout would start a group without weights: it joins the last one instead
    assert groups[2][1][2:] == [model.out[0]]


def test_a_head_inside_a_container_that_is_not_opened_is_refused():
    class Closed(Toy):
        opened = ("body",)

    with pytest.raises(DeepnotesError, match=r"Closed: the head is inside 'out', which is not "
                                             r"in opened \('body',\)"):
        Closed().layer_groups()


def test_every_registered_model_has_the_surface_once():
    classes = {cls for cls, _ in MODELS.values()}
    assert all(issubclass(cls, Network) for cls in classes)
    assert all(cls.features is not Network.features for cls in classes)
    # one reset_head; GoogLeNet extends it for its auxiliary classifiers
    own = {cls.__name__ for cls in classes for c in cls.__mro__
           if c is not Network and "reset_head" in vars(c)}
    assert own == {"GoogLeNet"}
