"""A fully connected network for tables: n_x features -> hidden ReLU layers -> softmax."""

from __future__ import annotations

import torch
from torch import nn

from deepnotes.models.network import Network


class MLP(Network):
    """a[l] = ReLU(W[l] a[l-1] + b[l]) for each hidden layer, then a linear softmax layer."""

    input_kind = "table"
    input_size = None
    head: nn.Linear
    opened = ("body",)  # layer groups: each hidden layer

    def __init__(self, num_classes: int = 2, in_channels: int = 1, hidden: tuple = (64, 64)):
        super().__init__()
        layers, n_prev = [], in_channels  # for a table, in_channels is n_x, the number of features
        for n in hidden:
            layers += [nn.Linear(n_prev, n), nn.ReLU()]
            n_prev = n
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(n_prev, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # (B, n_x) -> (B, hidden[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
