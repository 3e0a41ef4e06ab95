"""The softmax output layer: y_i = e^(z_i) / sum_j e^(z_j), so 0 < y_i < 1 and sum_i y_i = 1.

Computed as e^(z_i - max z) / sum_j e^(z_j - max z), which is the same number without overflow.
Training never forms the probabilities: cross-entropy takes log-softmax of the logits directly.
"""

from __future__ import annotations

import torch


def softmax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Probabilities from logits z along ``dim``."""
    t = torch.exp(z - z.amax(dim, keepdim=True))
    return t / t.sum(dim, keepdim=True)
