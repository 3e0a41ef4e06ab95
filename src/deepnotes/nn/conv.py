"""Convolution as the notes define it: an f x f filter over an n x n (x n_C) volume.

n^[l] = floor((n^[l-1] + 2p^[l] - f^[l]) / s^[l]) + 1.
"Valid" adds no padding (p = 0); "same" pads so that the output keeps the input's n_H x n_W
(stride 1: p = (f - 1) / 2). For an even f the padding cannot be split evenly: the extra row and
column go to the bottom and right, as in TensorFlow and torch. For stride s > 1, "same" pads so that
n_out = ceil(n / s), again with any odd pixel at the bottom and right.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.errors import DeepnotesError


def conv_output_size(n: int, f: int, p: int = 0, s: int = 1) -> int:
    """floor((n + 2p - f) / s) + 1, the notes' size of a convolution's or pooling's output."""
    if f < 1 or s < 1 or p < 0:
        raise DeepnotesError(f"f={f}, p={p}, s={s}: need f >= 1, s >= 1, p >= 0")
    out = (n + 2 * p - f) // s + 1
    if out < 1:
        raise DeepnotesError(
            f"floor((n + 2p - f) / s) + 1 = floor(({n} + 2*{p} - {f}) / {s}) + 1 = {out} < 1: "
            f"an input of {n} pixels is too small for f={f}, p={p}, s={s}"
        )
    return out


def same_padding(n: int, f: int, s: int = 1) -> tuple[int, int]:
    """(before, after) padding so that n_out = ceil(n / s); the odd pixel goes after."""
    total = max((math.ceil(n / s) - 1) * s + f - n, 0)
    return total // 2, total - total // 2


class Conv2d(nn.Conv2d):
    """A convolution layer with the notes' padding words: ``"valid"``, ``"same"`` or an int p.

    Input (B, n_C[l-1], n_H, n_W) -> output (B, n_C[l], n_H[l], n_W[l]); parameters W of shape
    (n_C[l], n_C[l-1], f, f) and b of shape (n_C[l],), as torch's Conv2d (same state_dict).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: str | int = "valid", bias: bool = True, groups: int = 1):
        if isinstance(padding, str) and padding not in ("valid", "same"):
            raise DeepnotesError(f"padding={padding!r}: expected 'valid', 'same' or an int")
        self.same = padding == "same"
        torch_padding = 0 if padding in ("valid", "same") else padding
        super().__init__(in_channels, out_channels, kernel_size, stride, torch_padding,
                         bias=bias, groups=groups)

    def extra_repr(self) -> str:
        return super().extra_repr() + (", padding=same" if self.same else "")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x)  # x: (B, n_C[l-1], n_H, n_W)
        if not self.same:
            return super().forward(x)
        (f_h, f_w), (s_h, s_w) = self.kernel_size, self.stride
        top, bottom = same_padding(x.shape[-2], f_h, s_h)
        left, right = same_padding(x.shape[-1], f_w, s_w)
        if (top, left) != (bottom, right):  # an even f: the extra pixel at the bottom and right
            x, top, left = F.pad(x, (0, right - left, 0, bottom - top)), top, left
        return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation,
                        self.groups)


def check_input(layer: nn.Module, x: torch.Tensor) -> None:
    """A clear error naming the layer and the notes' size arithmetic for a wrong input."""
    if x.dim() != 4:
        raise DeepnotesError(f"{layer}: expected a (B, n_C, n_H, n_W) input, got shape "
                             f"{tuple(x.shape)}")
    in_channels = getattr(layer, "in_channels", None)
    if in_channels is not None and x.shape[1] != in_channels:
        raise DeepnotesError(f"{layer}: expected n_C = {in_channels} input channels, got "
                             f"{x.shape[1]} (input shape {tuple(x.shape)})")
    if getattr(layer, "same", False):
        return
    f, s, p = (_pair(getattr(layer, k)) for k in ("kernel_size", "stride", "padding"))
    for axis, n in (("n_H", x.shape[-2]), ("n_W", x.shape[-1])):
        i = 0 if axis == "n_H" else 1
        try:
            conv_output_size(n, f[i], p[i], s[i])
        except DeepnotesError as exc:
            raise DeepnotesError(f"{layer}: {axis}: {exc}") from None


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)
