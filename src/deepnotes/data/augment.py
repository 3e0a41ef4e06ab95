"""Data augmentation on tensors, a whole mini-batch at a time: random crops and mirror images.

``crop``: pad each image by p pixels on every side with zeros, then cut a random n_H x n_W window
(the image shifted by up to p pixels). ``flip``: mirror left-right with probability 1/2 (right
for photos and clothes, wrong for digits and text). The randomness of batch b of epoch e comes from
(seed, e, b) alone, so a resumed run sees the same augmented batches; the numbers are drawn on
the generator's device (the GPU's for data on a GPU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deepnotes.errors import DeepnotesError

KINDS = ("crop", "flip")


def parse(spec: str | None) -> tuple[str, ...]:
    """``"crop,flip"`` -> ("crop", "flip"); ``None``, ``""`` or ``"none"`` -> ()."""
    if not spec or spec == "none":
        return ()
    kinds = tuple(k.strip() for k in spec.split(","))
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise DeepnotesError(f"--augment {spec!r}: unknown {bad[0]!r}; expected a comma list of "
                             f"{', '.join(KINDS)} (or none)")
    return kinds


class Augment:
    """Apply the chosen augmentations to a batch of images (B, n_C, n_H, n_W)."""

    def __init__(self, kinds: tuple[str, ...], padding: int | None = None):
        self.kinds, self.padding = kinds, padding

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if "crop" in self.kinds:
            x = random_crop(x, self.padding or max(1, x.shape[-1] // 8), generator)
        if "flip" in self.kinds:
            x = random_flip(x, generator)
        return x


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Each image shifted by a random (dy, dx) in [-p, p]^2, the gap filled with zeros."""
    b, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)  # (B, n_C, n_H + 2p, n_W + 2p)
    dy, dx = torch.randint(0, 2 * padding + 1, (2, b), generator=generator,
                           device=generator.device).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (B, n_H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, n_W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = (torch.rand(len(x), generator=generator, device=generator.device) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)
