"""Data specs -> in-memory data sets -> splits -> mini-batches.

A spec is a bundled name (``digits``, ``breast-cancer``), an IDX data set (``fashion-mnist``,
``mnist``), a folder of images with one sub-folder per class, or a CSV file.
"""

from __future__ import annotations

from pathlib import Path

from deepnotes.data.dataset import Dataset, resize_images
from deepnotes.data.loader import Batches, Normalizer
from deepnotes.data.splits import Splits, label_shift, stratified_split
from deepnotes.errors import DeepnotesError, unknown_name

NAMED = ("digits", "breast-cancer", "fashion-mnist", "mnist")

__all__ = ["NAMED", "Batches", "Dataset", "Normalizer", "Splits", "label_shift", "load_dataset",
           "stratified_split"]


def load_dataset(spec: str, *, image_size: int | None = None, data_dir: str | None = None,
                 skip_bad: bool = False, label_column: str | None = None,
                 progress: bool = False) -> Dataset:
    """Load a data set by spec; images are resized to ``image_size`` x ``image_size``."""
    dataset = _load(spec, image_size, data_dir, skip_bad, label_column, progress)
    if dataset.kind == "image" and image_size is not None:
        dataset.x = resize_images(dataset.x, image_size)
    return dataset


def _load(spec, image_size, data_dir, skip_bad, label_column, progress) -> Dataset:
    from deepnotes.data import bundled, idx

    if spec == "digits":
        return bundled.load_digits()
    if spec == "breast-cancer":
        return bundled.load_breast_cancer()
    if spec in ("fashion-mnist", "mnist"):
        return idx.load_idx_dataset(spec, data_dir=data_dir)
    path = Path(spec)
    if path.suffix.lower() == ".csv":
        from deepnotes.data.tables import load_csv

        return load_csv(path, label_column=label_column)
    if path.is_dir():
        from deepnotes.data.images import load_image_folder

        return load_image_folder(path, size=image_size or 64, skip_bad=skip_bad, progress=progress)
    if path.is_file():
        raise DeepnotesError(f"--data {spec}: expected a .csv file or a folder of images")
    if "/" in spec or "\\" in spec or path.suffix:
        raise DeepnotesError(f"--data {spec}: no such file or folder")
    raise DeepnotesError(
        unknown_name("data set", spec, list(NAMED)) + ", a folder of images or a .csv file"
    )
