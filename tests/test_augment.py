"""Augmentation on tensors: random shifts, resized crops and mirror images, reproducible per
batch and the same whether one process augments a batch or each rank its own slice."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deepnotes.data import Batches, Normalizer
from deepnotes.data.augment import (
    RATIO,
    SCALE,
    Augment,
    crop_windows,
    parse,
    random_crop,
    random_flip,
    random_resized_crop,
)
from deepnotes.errors import DeepnotesError


def images(b=16, c=3, n=8):
    return torch.randint(0, 256, (b, c, n, n), dtype=torch.uint8)


def test_a_crop_is_a_window_of_the_padded_image():
    x = images()
    out = random_crop(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = F.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):
        windows = [padded[i, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)
    assert not torch.equal(out, x)  # 16 images: some shift is not (0, 0)


def test_a_flip_mirrors_about_half_the_images():
    x = images(b=200)
    out = random_flip(x, torch.Generator().manual_seed(1))
    mirrored = [torch.equal(o, i.flip(-1)) for o, i in zip(out, x)]
    kept = [torch.equal(o, i) for o, i in zip(out, x)]
    assert all(m or k for m, k in zip(mirrored, kept))
    assert 60 < sum(mirrored) < 140


def test_same_generator_seed_same_batch():
    x, aug = images(), Augment(("crop", "flip"))
    a = aug(x, torch.Generator().manual_seed(5))
    b = aug(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_batches_augment_reproducibly_and_from_any_start():
    x, y = images(b=20), torch.arange(20) % 2
    batches = Batches(x, y, torch.arange(20), 4, Normalizer([0.5] * 3, [0.25] * 3, 1 / 255),
                      shuffle=True, seed=3, augment=Augment(("crop", "flip")))
    first = [xb for xb, _ in batches.epoch(2)]
    again = [xb for xb, _ in batches.epoch(2, start=3)]
    assert all(torch.equal(a, b) for a, b in zip(first[3:], again))
    plain = Batches(x, y, torch.arange(20), 4, batches.normalizer, shuffle=True, seed=3)
    assert not all(torch.equal(a, b) for a, (b, _) in zip(first, plain.epoch(2)))


def test_a_resized_crop_is_torchs_bilinear_resize_of_its_window():
    """The oracle: each image's window cut out and resized by F.interpolate (bilinear,
    align_corners=False), one image at a time."""
    x = images(b=24, n=20)
    out = random_resized_crop(x, torch.Generator().manual_seed(4))
    y0, x0, h, w = crop_windows(24, 20, 20, torch.Generator().manual_seed(4))
    assert out.shape == x.shape and out.dtype == torch.uint8
    for i in range(24):
        window = x[i:i + 1, :, y0[i]:y0[i] + h[i], x0[i]:x0[i] + w[i]].float()
        want = F.interpolate(window, size=(20, 20), mode="bilinear", align_corners=False)
        got = out[i].float()
        assert (got - want[0].round()).abs().max() <= 1  # a .5 may round either way
        assert (got - want[0]).abs().mean() < 0.3


def test_resized_crop_windows_fit_and_spread_over_the_scales_and_ratios():
    y0, x0, h, w = crop_windows(4000, 32, 48, torch.Generator().manual_seed(0))
    assert (y0 >= 0).all() and (x0 >= 0).all() and (h >= 1).all() and (w >= 1).all()
    assert (y0 + h <= 32).all() and (x0 + w <= 48).all()
    area = (h * w).double() / (32 * 48)
    assert area.min() < SCALE[0] + 0.03 and area.max() > 0.85  # at most 4/3 x 1 of 3/2 x 1
    ratio = w.double() / h.double()
    inside = (ratio > RATIO[0] * 0.85) & (ratio < RATIO[1] * 1.15)  # rounding to pixels
    assert inside.double().mean() > 0.95
    assert 0.3 < area.mean() < 0.6  # drawn from U(0.08, 1), large windows fit less often


@pytest.mark.parametrize("kinds", [("crop", "flip"), ("resized-crop", "flip"),
                                   ("resized-crop", "crop", "flip")])
def test_a_rank_that_augments_its_slice_gets_that_slice_of_the_augmented_batch(kinds):
    x, aug = images(b=12, n=16), Augment(kinds)
    whole = aug(x, torch.Generator().manual_seed(9))
    for part in (slice(0, 4), slice(4, 8), slice(8, 12)):
        assert torch.equal(aug(x[part], torch.Generator().manual_seed(9), 12, part),
                           whole[part])


@pytest.mark.parametrize("spec,kinds", [(None, ()), ("none", ()), ("crop", ("crop",)),
                                        ("crop,flip", ("crop", "flip")),
                                        ("resized-crop,flip", ("resized-crop", "flip"))])
def test_parse(spec, kinds):
    assert parse(spec) == kinds


def test_an_unknown_augmentation_is_named():
    with pytest.raises(DeepnotesError, match="'rotate'"):
        parse("crop,rotate")
