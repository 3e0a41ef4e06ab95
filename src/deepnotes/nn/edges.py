"""Edge detection, the notes' first example of convolution.

A 6x6 image whose left half is 10 and right half 0, convolved with the vertical-edge filter
[[1, 0, -1]] * 3, gives a 4x4 output with 30 in its two middle columns: a bright band where the
edge is. (Convolution here is the deep-learning one, cross-correlation: the filter is not flipped.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deepnotes.errors import DeepnotesError, unknown_name

FILTERS = {
    "vertical": [[1, 0, -1], [1, 0, -1], [1, 0, -1]],
    "horizontal": [[1, 1, 1], [0, 0, 0], [-1, -1, -1]],
    "sobel": [[1, 0, -1], [2, 0, -2], [1, 0, -1]],
    "scharr": [[3, 0, -3], [10, 0, -10], [3, 0, -3]],
}


def edge_filter(name: str = "vertical", transpose: bool = False) -> torch.Tensor:
    """A 3x3 filter; ``transpose`` turns a vertical-edge filter into a horizontal one."""
    if name not in FILTERS:
        raise DeepnotesError(unknown_name("edge filter", name, list(FILTERS)))
    f = torch.tensor(FILTERS[name], dtype=torch.float32)
    return f.T.contiguous() if transpose else f


def detect_edges(image: torch.Tensor, name: str = "vertical", transpose: bool = False,
                 padding: str | int = "valid") -> torch.Tensor:
    """Convolve an (n_H, n_W) grey image with an edge filter: (n_H - 2, n_W - 2) for "valid"."""
    if image.dim() != 2:
        raise DeepnotesError(f"detect_edges: expected one (n_H, n_W) grey image, got shape "
                             f"{tuple(image.shape)}")
    x = image.double() if image.dtype == torch.float64 else image.float()
    f = edge_filter(name, transpose).to(x.dtype)  # in x's float type: -1 must stay -1
    return F.conv2d(x[None, None], f[None, None], padding=padding)[0, 0]
