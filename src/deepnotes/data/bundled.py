"""Data sets that scikit-learn ships, so they work offline: digits and breast-cancer."""

from __future__ import annotations

import torch

from deepnotes.data.dataset import Dataset


def load_digits() -> Dataset:
    """1,797 real handwritten digits, 8x8 grey images with values 0..16, scaled to 0..255."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = torch.from_numpy(bunch.images).mul(255 / 16).round().to(torch.uint8).unsqueeze(1)
    y = torch.from_numpy(bunch.target).long()
    return Dataset("digits", x, y, [str(c) for c in range(10)])  # x: (1797, 1, 8, 8)


def load_breast_cancer() -> Dataset:
    """569 tumours, 30 numeric features, binary: malignant (0) or benign (1)."""
    from sklearn.datasets import load_breast_cancer as sk_cancer

    bunch = sk_cancer()
    x = torch.from_numpy(bunch.data).float()  # (569, 30)
    y = torch.from_numpy(bunch.target).long()
    return Dataset("breast-cancer", x, y, [str(name) for name in bunch.target_names])
