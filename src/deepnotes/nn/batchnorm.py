"""Batch normalisation: the notes normalise z over the mini-batch; the course scales and shifts.

    mu = 1/m sum_i z(i)                 sigma^2 = 1/m sum_i (z(i) - mu)^2
    z_norm(i) = (z(i) - mu) / sqrt(sigma^2 + eps)
    z~(i) = gamma * z_norm(i) + beta

gamma and beta are learned (``weight`` and ``bias``). At test time there is no mini-batch: mu and
sigma^2 come from exponentially weighted averages kept during training,
running = (1 - momentum) * running + momentum * batch value (sigma^2 there is the unbiased
estimate, m / (m - 1) times the batch's, as in torch). The statistics are per feature (1d) or per
channel over (B, n_H, n_W) (2d). A layer before batch norm needs no bias: beta takes its place.

``reference=True`` computes the lines above one by one; the default calls torch's fused kernel,
which computes the same (a test holds the two equal, and equal to torch.nn.BatchNorm).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.errors import DeepnotesError


class _BatchNorm(nn.Module):
    ndim: tuple[int, ...] = (2,)
    running_mean: torch.Tensor  # buffers (register_buffer below)
    running_var: torch.Tensor
    num_batches_tracked: torch.Tensor

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 reference: bool = False):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.reference = reference
        self.weight = nn.Parameter(torch.ones(num_features))  # gamma
        self.bias = nn.Parameter(torch.zeros(num_features))  # beta
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() not in self.ndim or z.shape[1] != self.num_features:
            dims = " or ".join(map(str, self.ndim))
            raise DeepnotesError(f"{self}: expected input of {dims} dims with "
                                 f"{self.num_features} features on dim 1, got {tuple(z.shape)}")
        if self.training:
            self.num_batches_tracked.add_(1)
        if self.training and z.numel() // z.shape[1] < 2:
            raise DeepnotesError(f"{self}: a mini-batch of one value per channel has no "
                                 "variance; use a batch of 2 or more (or drop the last batch)")
        if not self.reference:
            return F.batch_norm(z, self.running_mean, self.running_var, self.weight, self.bias,
                                self.training, self.momentum, self.eps)
        return self._reference(z)

    def _reference(self, z: torch.Tensor) -> torch.Tensor:
        shape = [1, -1] + [1] * (z.dim() - 2)
        dims = [0, *range(2, z.dim())]  # every axis but the features / channels
        if self.training:
            mu = z.mean(dims)
            var = z.var(dims, unbiased=False)  # sigma^2
            m = z.numel() // z.shape[1]
            with torch.no_grad():
                self.running_mean.lerp_(mu.detach(), self.momentum)
                self.running_var.lerp_(var.detach() * m / (m - 1), self.momentum)
        else:
            mu, var = self.running_mean, self.running_var
        z_norm = (z - mu.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        return self.weight.view(shape) * z_norm + self.bias.view(shape)


class BatchNorm1d(_BatchNorm):
    """Batch norm over features: z of shape (B, n) or (B, n, T)."""

    ndim = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm over channels: z of shape (B, n_C, n_H, n_W), statistics over B, n_H, n_W."""

    ndim = (4,)
