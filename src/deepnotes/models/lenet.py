"""LeNet-5 (LeCun et al., 1998), the notes' first classic network.

32x32x1 -> conv f=5 (6) -> 28x28x6 -> pool f=2 s=2 -> 14x14x6 -> conv f=5 (16) -> 10x10x16
-> pool -> 5x5x16 = 400 -> fc 120 -> fc 84 -> softmax over the classes.
As the course says, n_H and n_W shrink while n_C grows. The classic network uses tanh and average
pooling; ``activation="relu"`` gives the modern variant with ReLU and max pooling.
"""

from __future__ import annotations

import torch
from torch import nn

from deepnotes.models.network import Network
from deepnotes.nn import AvgPool2d, Conv2d, MaxPool2d


class LeNet5(Network):
    """LeNet-5 for (B, n_C, 32, 32) input; 61,706 parameters for one channel and 10 classes."""

    input_kind = "image"
    input_size = 32
    head: nn.Linear
    opened = ("conv", "fc")  # layer groups: each convolution, each FC layer

    def __init__(self, num_classes: int = 10, in_channels: int = 1, activation: str = "tanh"):
        super().__init__()
        act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
        pool = AvgPool2d if activation == "tanh" else MaxPool2d
        self.conv = nn.Sequential(
            Conv2d(in_channels, 6, 5), act(), pool(2, 2),  # (B, 6, 14, 14)
            Conv2d(6, 16, 5), act(), pool(2, 2),  # (B, 16, 5, 5)
        )
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), act(), nn.Linear(120, 84), act()
        )
        self.head = nn.Linear(84, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_C, 32, 32) -> (B, 84), the activations the softmax layer reads."""
        return self.fc(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # logits z: (B, num_classes)
