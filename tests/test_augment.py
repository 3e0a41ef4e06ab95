"""Augmentation on tensors: random shifts and mirror images, reproducible per batch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deepnotes.data import Batches, Normalizer
from deepnotes.data.augment import Augment, parse, random_crop, random_flip
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


@pytest.mark.parametrize("spec,kinds", [(None, ()), ("none", ()), ("crop", ("crop",)),
                                        ("crop,flip", ("crop", "flip"))])
def test_parse(spec, kinds):
    assert parse(spec) == kinds


def test_an_unknown_augmentation_is_named():
    with pytest.raises(DeepnotesError, match="'rotate'"):
        parse("crop,rotate")
