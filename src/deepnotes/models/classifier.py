"""The layout AlexNet and VGG share (torchvision's): ``features`` (convolutions and pools), an
adaptive ``avgpool``, then a fully connected ``classifier`` whose last Linear is the head.

torchvision's attribute ``features`` clashes with our ``features(x)`` method, so the convolution
stack is registered under that name (its state_dict keys stay ``features.N.*``) and reached as
``body``.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from deepnotes.models.network import Network


class ConvClassifier(Network):
    """body -> avgpool -> flatten -> classifier[:-1] -> head (classifier[-1])."""

    opened = ("features", "classifier")  # layer groups: each convolution, each FC layer
    avgpool: nn.Module  # set by each subclass, as is the "features" module
    classifier: nn.Sequential

    @property
    def body(self) -> nn.Sequential:
        return cast(nn.Sequential, self._modules["features"])

    @property
    def head(self) -> nn.Linear:
        return cast(nn.Linear, self.classifier[-1])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_C, n_H, n_W) -> (B, 4096), the activations of the second FC layer."""
        x = self.avgpool(self.body(x))  # (B, n_C, 6, 6) for AlexNet, (B, 512, 7, 7) for VGG
        return self.classifier[:-1](torch.flatten(x, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # logits z: (B, num_classes)
