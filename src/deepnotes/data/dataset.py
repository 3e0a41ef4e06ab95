"""A labelled data set held in memory as tensors.

Images are kept as uint8 volumes ``(m, n_C, n_H, n_W)`` and tables as float32 feature matrices
``(m, n_x)``; labels are int64 class indices ``(m,)``. Everything downstream (splits, batching,
metrics) works on index tensors into these, never on per-example Python objects.

Sequences are int64 token ids ``(m, T)`` padded with 0, with a ``vocab`` (index 0 ``<pad>``, 1
``<unk>``) and a ``task``: ``"tokens"`` (one label a sequence, y ``(m,)``), ``"lm"`` (y ``(m, T)``:
the next character at each step), ``"tags"`` (y ``(m, T)``: a tag a token) or ``"pairs"`` (y
``(m, T_y)``: the target sequence). In y ``(m, T)``, IGNORE marks padded steps; ``classes`` names
the outputs (labels, tags, or the output vocabulary).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from deepnotes.errors import DeepnotesError

IGNORE = -100  # a padded step of y (m, T): no loss, no metric (torch's cross-entropy default)
SEQUENCE_TASKS = ("tokens", "lm", "tags", "pairs")


@dataclass
class Dataset:
    """Examples ``x``, labels ``y``, class names; ``test_indices``: a data set's own test set."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]
    test_indices: torch.Tensor | None = None
    skipped: list[str] = field(default_factory=list)
    task: str | None = None  # a sequence task (SEQUENCE_TASKS); None: images or a table
    vocab: list[str] | None = None  # the input tokens of a sequence task, by id
    on_disk: bool = False  # x is mapped from a decoded cache (data.cache): read it by batches
    readahead: Callable[[torch.Tensor], None] | None = None  # on disk: ask for x[idx] ahead
    sources: list[str] | None = None  # each example's file (an image folder's); None: unnamed

    def __post_init__(self):
        if len(self.x) != len(self.y):
            raise DeepnotesError(
                f"{self.name}: {len(self.x)} examples but {len(self.y)} labels; "
                "expected one label each"
            )
        if len(self.y) == 0:
            raise DeepnotesError(f"{self.name}: no examples found")
        if len(self.classes) < 2:
            raise DeepnotesError(f"{self.name}: need at least 2 classes, found {len(self.classes)}")
        check_labels(self.y, len(self.classes), self.name)
        if self.x.is_floating_point():
            check_finite(self.x, self.name)

    def to(self, device) -> None:
        """Move the examples and labels to ``device`` once, for every split; examples mapped from
        a decoded cache stay on disk (batches are read from it and moved one at a time)."""
        if not self.on_disk:
            self.x = self.x.to(device)
        self.y = self.y.to(device)

    @property
    def kind(self) -> str:
        """``"image"`` for (m, n_C, n_H, n_W) volumes, ``"table"`` for (m, n_x) features, else
        the sequence task."""
        if self.task is not None:
            return self.task
        return "image" if self.x.dim() == 4 else "table"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        """n_C for images, n_x (the number of features) for tables, the vocabulary's size for
        sequences."""
        return len(self.vocab) if self.vocab is not None else self.x.shape[1]


def check_labels(y: torch.Tensor, num_classes: int, where: str) -> None:
    """Raise unless every label is an integer in [0, num_classes); in targets of several steps
    or tasks (y of 2 or more dimensions) IGNORE marks an entry with no label."""
    if y.dim() > 1:
        y = y[y != IGNORE]
    bad = (y < 0) | (y >= num_classes)
    if bad.any():
        first = int(bad.nonzero()[0, 0])
        raise DeepnotesError(
            f"{where}: {int(bad.sum())} labels out of range [0, {num_classes - 1}]; "
            f"first at index {first} (label {int(y[first])})"
        )


def check_finite(x: torch.Tensor, where: str) -> None:
    """Raise naming the count and first row of NaN or infinite values."""
    bad = ~torch.isfinite(x)
    if bad.any():
        first = int(bad.reshape(len(x), -1).any(1).nonzero()[0, 0])
        raise DeepnotesError(
            f"{where}: {int(bad.sum())} NaN or infinite values; first in example {first}"
        )


def resize_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 images (m, n_C, n_H, n_W) to (m, n_C, size, size) with antialiased bilinear."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    out = torch.empty(*x.shape[:2], size, size, dtype=torch.uint8)
    for i in range(0, len(x), 4096):  # in chunks: float copies of 70k images would be large
        chunk = x[i : i + 4096].float()
        chunk = F.interpolate(chunk, size=(size, size), mode="bilinear", antialias=True)
        out[i : i + 4096] = chunk.round_().clamp_(0, 255).to(torch.uint8)
    return out
