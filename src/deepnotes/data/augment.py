"""Data augmentation on tensors, a whole mini-batch at a time: random crops and mirror images.

``crop``: pad each image by p pixels on every side with zeros, then cut a random n_H x n_W window
(the image shifted by up to p pixels). ``resized-crop``: cut a random window of 8% to 100% of the
image's area and of aspect ratio 3/4 to 4/3, and resize it to n_H x n_W (bilinear), the
augmentation photos at 224 px are trained with since Inception. ``flip``: mirror left-right with
probability 1/2 (right for photos and clothes, wrong for digits and text). The randomness of
batch b of epoch e comes from (seed, e, b) alone, so a resumed run sees the same augmented
batches; the numbers are drawn on the generator's device (the GPU's for data on a GPU). Every
draw is made for the whole global batch, so a data-parallel rank that augments only its own
slice of the batch draws what one process would.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from deepnotes.errors import DeepnotesError

KINDS = ("crop", "resized-crop", "flip")
SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)  # of the area, and width / height
TRIES = 10  # windows drawn per image; the first that fits is cut


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

    def __call__(self, x: torch.Tensor, generator: torch.Generator, batch: int | None = None,
                 part: slice = slice(None)) -> torch.Tensor:
        """``x``: the rows ``part`` of a batch of ``batch`` images (all of it by default)."""
        batch = len(x) if batch is None else batch
        if "resized-crop" in self.kinds:
            x = random_resized_crop(x, generator, batch, part)
        if "crop" in self.kinds:
            x = random_crop(x, self.padding or max(1, x.shape[-1] // 8), generator, batch, part)
        if "flip" in self.kinds:
            x = random_flip(x, generator, batch, part)
        return x


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator,
                batch: int | None = None, part: slice = slice(None)) -> torch.Tensor:
    """Each image shifted by a random (dy, dx) in [-p, p]^2, the gap filled with zeros."""
    b, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)  # (B, n_C, n_H + 2p, n_W + 2p)
    dy, dx = torch.randint(0, 2 * padding + 1, (2, batch or b), generator=generator,
                           device=generator.device)[:, part].to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (B, n_H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, n_W)
    images = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[images, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_flip(x: torch.Tensor, generator: torch.Generator, batch: int | None = None,
                part: slice = slice(None)) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    u = torch.rand(batch or len(x), generator=generator, device=generator.device)[part]
    flip = (u < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_resized_crop(x: torch.Tensor, generator: torch.Generator, batch: int | None = None,
                        part: slice = slice(None)) -> torch.Tensor:
    """Each image's random window (:func:`crop_windows`) resized back to n_H x n_W, bilinear:
    output pixel (i, j) reads the window at (y0 + (i + 1/2) h / n_H - 1/2,
    x0 + (j + 1/2) w / n_W - 1/2), clamped to the window's edge pixels (what
    ``F.interpolate(window, align_corners=False)`` reads). uint8 in, uint8 out."""
    _, _, height, width = x.shape
    y0, x0, h, w = (t.to(x.device) for t in
                    crop_windows(batch or len(x), height, width, generator)[:, part])
    ys = _sample_points(y0, h, height)  # (B, n_H), in the image's pixels
    xs = _sample_points(x0, w, width)  # (B, n_W)
    grid = torch.stack(torch.broadcast_tensors(
        ((2 * xs + 1) / width - 1)[:, None, :], ((2 * ys + 1) / height - 1)[:, :, None]), -1)
    out = F.grid_sample(x.float(), grid, mode="bilinear", align_corners=False)
    return out.round_().clamp_(0, 255).to(x.dtype) if x.dtype == torch.uint8 else out


def _sample_points(start: torch.Tensor, length: torch.Tensor, n: int) -> torch.Tensor:
    """Where each of n output pixels reads a window [start, start + length) of each image."""
    at = start[:, None] + (torch.arange(n, device=start.device) + 0.5) * (length[:, None] / n) \
        - 0.5
    return torch.minimum(torch.maximum(at, start[:, None].float()),
                         (start + length - 1)[:, None].float())


def crop_windows(b: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """(4, B) windows (y0, x0, h, w): of each image, up to :data:`TRIES` draws of an area
    s * height * width with s ~ U(0.08, 1) and an aspect ratio w / h = r with log r ~
    U(log 3/4, log 4/3), h = round(sqrt(s A / r)), w = round(sqrt(s A r)); the first draw that
    fits the image is placed uniformly at random; an image none fits is cut whole."""
    dev = generator.device
    area = torch.empty(b, TRIES, device=dev).uniform_(*SCALE, generator=generator) * height * width
    log_r = torch.empty(b, TRIES, device=dev).uniform_(math.log(RATIO[0]), math.log(RATIO[1]),
                                                      generator=generator)
    w = (area * log_r.exp()).sqrt().round().long()
    h = (area / log_r.exp()).sqrt().round().long()
    fits = (w >= 1) & (w <= width) & (h >= 1) & (h <= height)
    first = fits.long().argmax(1)  # the first draw that fits (0 when none does)
    pick = torch.arange(b, device=dev)
    ok = fits[pick, first]
    h = torch.where(ok, h[pick, first], height)
    w = torch.where(ok, w[pick, first], width)
    u = torch.rand(2, b, generator=generator, device=dev)
    y0 = (u[0] * (height - h + 1)).long().clamp_max(height - h)
    x0 = (u[1] * (width - w + 1)).long().clamp_max(width - w)
    return torch.stack([y0, x0, h, w])
