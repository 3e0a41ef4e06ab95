"""The model zoo: ``create_model(name, num_classes=, in_channels=)`` and ``list_models()``.

Every model has ``features(x)``, a ``head`` layer and ``reset_head(num_classes)``, and says what it
reads: ``input_kind`` ("image" or "table") and ``input_size`` (n_H = n_W, or None for any).
"""

from __future__ import annotations

from torch import nn

from deepnotes.errors import DeepnotesError, unknown_name
from deepnotes.models.lenet import LeNet5
from deepnotes.models.mlp import MLP

MODELS = {
    "lenet5": (LeNet5, {"activation": "tanh"}),
    "lenet5_relu": (LeNet5, {"activation": "relu"}),
    "mlp": (MLP, {}),
}


def list_models() -> list[str]:
    return sorted(MODELS)


def model_class(name: str) -> type[nn.Module]:
    """The class behind a registered name (for its ``input_kind`` and ``input_size``)."""
    if name not in MODELS:
        raise DeepnotesError(unknown_name("model", name, list_models()))
    return MODELS[name][0]


def create_model(name: str, num_classes: int = 10, in_channels: int = 1, **kwargs) -> nn.Module:
    """Build a registered model for ``num_classes`` outputs and ``in_channels`` input channels."""
    cls = model_class(name)
    if num_classes < 2:
        raise DeepnotesError(f"num_classes={num_classes}: need at least 2 classes")
    return cls(num_classes=num_classes, in_channels=in_channels, **{**MODELS[name][1], **kwargs})

