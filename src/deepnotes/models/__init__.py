"""The model zoo: ``create_model(name, num_classes=, in_channels=)`` and ``list_models()``.

Every model is a :class:`~deepnotes.models.network.Network`: it has ``features(x)``, a ``head``
layer, ``reset_head(num_classes)``, ``head_prefix()`` and ``layer_groups()``, and says what it
reads: ``input_kind`` ("image" or "table", or a tuple of the sequence tasks it takes) and
``input_size`` (n_H = n_W, or None for any). Sequence models (``sequence = True``) also take
``task=``, the kind of data (see :mod:`deepnotes.models.sequence`).
"""

from __future__ import annotations

from typing import Any

from deepnotes.errors import DeepnotesError, unknown_name
from deepnotes.models.alexnet import AlexNet
from deepnotes.models.fastnet import FastNet
from deepnotes.models.inception import GoogLeNet
from deepnotes.models.lenet import LeNet5
from deepnotes.models.mlp import MLP
from deepnotes.models.network import Network  # noqa: F401 (deepnotes.models.Network)
from deepnotes.models.resnet import ResNet
from deepnotes.models.sequence import CharLM, Seq2Seq, SequenceClassifier, Tagger
from deepnotes.models.vgg import VGG
from deepnotes.models.weights import load_weights  # noqa: F401 (deepnotes.models.load_weights)

MODELS: dict[str, tuple[type[Network], dict[str, Any]]] = {
    "lenet5": (LeNet5, {"activation": "tanh"}),
    "lenet5_relu": (LeNet5, {"activation": "relu"}),
    "mlp": (MLP, {}),
    "alexnet": (AlexNet, {}),
    "vgg11": (VGG, {"depth": 11}),
    "vgg13": (VGG, {"depth": 13}),
    "vgg16": (VGG, {"depth": 16}),
    "vgg19": (VGG, {"depth": 19}),
    "vgg11_bn": (VGG, {"depth": 11, "batch_norm": True}),
    "vgg13_bn": (VGG, {"depth": 13, "batch_norm": True}),
    "vgg16_bn": (VGG, {"depth": 16, "batch_norm": True}),
    "vgg19_bn": (VGG, {"depth": 19, "batch_norm": True}),
    "resnet18": (ResNet, {"block": "basic", "layers": (2, 2, 2, 2)}),
    "resnet34": (ResNet, {"block": "basic", "layers": (3, 4, 6, 3)}),
    "resnet50": (ResNet, {"block": "bottleneck", "layers": (3, 4, 6, 3)}),
    "resnet101": (ResNet, {"block": "bottleneck", "layers": (3, 4, 23, 3)}),
    "resnet152": (ResNet, {"block": "bottleneck", "layers": (3, 8, 36, 3)}),
    "googlenet": (GoogLeNet, {}),
    "fastnet": (FastNet, {}),
    "rnn": (SequenceClassifier, {"cell": "rnn"}),
    "gru": (SequenceClassifier, {"cell": "gru"}),
    "lstm": (SequenceClassifier, {"cell": "lstm"}),
    "charlm": (CharLM, {}),
    "tagger": (Tagger, {}),
    "seq2seq": (Seq2Seq, {}),
}


ADAPTIVE = ("fastnet", "resnet18", "vgg11", "googlenet", "alexnet")  # one of each family


def list_models() -> list[str]:
    return sorted(MODELS)


def model_class(name: str) -> type[Network]:
    """The class behind a registered name (for its ``input_kind`` and ``input_size``)."""
    if name not in MODELS:
        raise DeepnotesError(unknown_name("model", name, list_models()))
    return MODELS[name][0]


def reads_side(name: str, side: int) -> bool:
    """Whether model ``name`` reads images of ``side`` pixels a side: its own ``input_size``,
    or ``min_input_size`` and up where its pooling before the head is adaptive."""
    cls = model_class(name)
    return side == cls.input_size or (cls.min_input_size is not None
                                      and side >= cls.min_input_size)


def check_side(name: str, side: int, option: str) -> None:
    """Refuse images of ``side`` pixels a side for model ``name`` unless it reads them
    (:func:`reads_side`), suggesting models that do. ``option`` is how the user gave the size
    (``--image-size 4``)."""
    cls = model_class(name)
    if reads_side(name, side):
        return
    least = f"at least {cls.min_input_size}" if cls.min_input_size else f"{cls.input_size}"
    others = [m for m in ADAPTIVE if m != name and reads_side(m, side)]
    instead = (f"a model with adaptive pooling that reads it ({', '.join(others)})" if others
               else "a model with adaptive pooling (none reads so few pixels)")
    raise DeepnotesError(f"{option}: --model {name} reads {least} pixels a side; pick another "
                         f"size, or {instead}")


def create_model(name: str, num_classes: int = 10, in_channels: int = 1, **kwargs) -> Network:
    """Build a registered model for ``num_classes`` outputs and ``in_channels`` input channels."""
    cls = model_class(name)
    if num_classes < 2:
        raise DeepnotesError(f"num_classes={num_classes}: need at least 2 classes")
    return cls(num_classes=num_classes, in_channels=in_channels, **{**MODELS[name][1], **kwargs})

