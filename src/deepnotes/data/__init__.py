"""Data specs -> in-memory data sets -> splits -> mini-batches.

A spec is a bundled name (``digits``, ``breast-cancer``), an IDX data set (``fashion-mnist``,
``mnist``), the generated ``dates`` translation pairs, a folder of images with one sub-folder per
class, a CSV file (a table, or texts and labels when its header has a ``text`` column), a ``.txt``
text (a character language model), a ``.conll`` file (tags) or a ``.tsv`` file of pairs.
"""

from __future__ import annotations

from pathlib import Path

# The readers are submodules imported here, at the top: none of them imports this package's own
# names (each imports data.dataset or data.text), so there is no cycle.
from deepnotes.data import bundled, dates, idx, images, tables, text
from deepnotes.data.dataset import Dataset, resize_images
from deepnotes.data.loader import Batches, Normalizer
from deepnotes.data.splits import Splits, label_shift, stratified_split
from deepnotes.errors import DeepnotesError, unknown_name

NAMED = ("digits", "breast-cancer", "fashion-mnist", "mnist", "dates")

FILES = "a .csv, .txt, .conll or .tsv file"

__all__ = ["NAMED", "Batches", "Dataset", "Normalizer", "Splits", "label_shift", "load_dataset",
           "stratified_split"]


def load_dataset(spec: str, *, image_size: int | None = None, data_dir: str | None = None,
                 skip_bad: bool = False, label_column: str | None = None,
                 progress: bool = False, max_len: int | None = None, errors: str = "strict",
                 seq_len: int = 64, min_count: int = 1,
                 targets: list[str] | None = None, cache: str = "auto",
                 cache_dir: str | None = None, channels: int | None = None) -> Dataset:
    """Load a data set by spec; images are resized to ``image_size`` x ``image_size``.

    Text files: ``max_len`` cuts longer sequences, ``errors`` (``strict`` or ``replace``) says
    what an undecodable byte does, ``seq_len`` is a language model's window, and tokens seen fewer
    than ``min_count`` times become ``<unk>``. ``targets``: the label columns of a CSV table with
    several binary tasks (``deepnotes.multitask``; y is then (m, T)). ``cache`` and
    ``cache_dir``: an image folder's decoded cache (:mod:`deepnotes.data.cache`). ``channels``:
    images converted to grey (1) or RGB (3) as they are read; None: a folder's own (1 if every
    image is grey, else 3).
    """
    text.check_errors(errors)
    if targets:
        _check_images_only(spec, channels, "table")
        return _load_targets(spec, targets, label_column)
    options = {"max_len": max_len, "errors": errors, "seq_len": seq_len, "min_count": min_count,
               "cache": cache, "cache_dir": cache_dir, "channels": channels}
    dataset = _load(spec, image_size, data_dir, skip_bad, label_column, progress, options)
    _check_images_only(spec, channels, dataset.kind)
    if dataset.kind == "image" and not dataset.on_disk:
        dataset.x = images.to_channels(dataset.x, channels)
    if dataset.kind == "image" and image_size is not None:
        dataset.x = resize_images(dataset.x, image_size)
    return dataset


def _check_images_only(spec: str, channels: int | None, kind: str) -> None:
    if channels is not None and kind != "image":
        raise DeepnotesError(f"--channels {channels}: converts images, and --data {spec} holds "
                             f"{kind} data")


def _load_targets(spec: str, targets: list[str], label_column: str | None) -> Dataset:
    path = Path(spec)
    if label_column:
        raise DeepnotesError("--targets and --label-column: give one (--targets names every "
                             "label column of a multi-task CSV)")
    if path.suffix.lower() != ".csv" or (path.is_file() and text.has_text_column(path)):
        raise DeepnotesError(f"--targets needs a CSV table of numeric features and 0/1 label "
                             f"columns; --data {spec} is not one")
    return tables.load_csv_targets(path, targets)


def _count(spec: str) -> int:
    """``dates:5000`` -> 5000 pairs."""
    count = spec.split(":", 1)[1]
    if not count.isdigit() or int(count) < 10:
        raise DeepnotesError(f"--data {spec}: expected dates or dates:N with N >= 10 pairs")
    return int(count)


def _load(spec, image_size, data_dir, skip_bad, label_column, progress, options) -> Dataset:
    if spec == "digits":
        return bundled.load_digits()
    if spec == "breast-cancer":
        return bundled.load_breast_cancer()
    if spec in ("fashion-mnist", "mnist"):
        return idx.load_idx_dataset(spec, data_dir=data_dir)
    if spec == "dates" or spec.startswith("dates:"):
        return dates.load_dates(_count(spec) if ":" in spec else 20000)
    path = Path(spec)
    max_len, errors, min_count = options["max_len"], options["errors"], options["min_count"]
    suffix = path.suffix.lower()
    if suffix == ".csv" and text.has_text_column(path):
        return text.load_text_csv(path, max_len, errors, min_count, label_column=label_column)
    if suffix == ".csv":
        return tables.load_csv(path, label_column=label_column)
    if suffix == ".txt":
        return text.load_text_lm(path, options["seq_len"], errors, min_count)
    if suffix == ".conll":
        return text.load_conll(path, max_len, errors, min_count)
    if suffix == ".tsv":
        return text.load_pairs(path, max_len, errors)
    if path.is_dir():
        return images.load_image_folder(path, size=image_size or 64, skip_bad=skip_bad,
                                        progress=progress, cache=options["cache"],
                                        cache_dir=options["cache_dir"],
                                        channels=options["channels"])
    if path.is_file():
        raise DeepnotesError(f"--data {spec}: expected {FILES} or a folder of images")
    if "/" in spec or "\\" in spec or path.suffix:
        raise DeepnotesError(f"--data {spec}: no such file or folder")
    raise DeepnotesError(
        unknown_name("data set", spec, list(NAMED)) + f", a folder of images or {FILES}"
    )
