"""Pooling layers: max and average over f x f windows with stride s (the notes: f = 2, s = 2).

No parameters to learn; n_out = floor((n + 2p - f) / s) + 1 on each of n_H and n_W, and n_C stays.
"""

from __future__ import annotations

from torch import nn

from deepnotes.nn.conv import check_input


class _Pool:
    """The notes' defaults (f = 2, s = f) and a clear error for an input too small to pool."""

    def __init__(self, kernel_size: int = 2, stride: int | None = None, padding: int = 0,
                 ceil_mode: bool = False):
        # a mixin: the next class in the MRO is torch's pooling layer, not object
        super().__init__(kernel_size, stride,  # type: ignore[call-arg]
                         padding, ceil_mode=ceil_mode)

    def forward(self, x):
        if not self.ceil_mode:
            check_input(self, x)
        return super().forward(x)


class MaxPool2d(_Pool, nn.MaxPool2d):
    """The largest value in each f x f window: keeps a feature if it was found anywhere in it."""


class AvgPool2d(_Pool, nn.AvgPool2d):
    """The mean of each f x f window (LeNet-5's subsampling)."""
