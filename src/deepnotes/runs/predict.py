"""``deepnotes predict``: a trained classifier's k most probable classes for new examples.

One path for the three kinds of run that give each example one label:

- **images** (``kind`` "image"): image files, read as training read them: converted to the run's
  n_C (grey or RGB) and resized to its n_H = n_W; ``invert`` first flips them, x -> 255 - x;
- **tables** ("table"): the rows of CSV files with the training file's feature columns (a label
  column may be there, and is ignored), parsed by the training reader
  (:func:`deepnotes.data.tables.load_features`), the columns put in the training order;
- **text classifiers** ("tokens"): one text a line, or a CSV file's ``text`` column, tokenised
  with the run's ``vocab.json`` and padded with 0 to the run's T_x
  (:func:`deepnotes.data.text.encode_texts`).

Then, whatever the kind, the run's normalisation x_norm = (x * scale - mu) / sigma, the network
and softmax, p_k = exp(z_k) / sum_j exp(z_j): each probability in (0, 1), summing to 1 over the
classes; :func:`predict` keeps the k largest of each example.

A light image given to a run trained on dark ones (or the other way round) is warned about,
once per image: the digits are white on black, a digit drawn on paper is black on white.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from deepnotes import atomic
from deepnotes.data import Normalizer, tables, text
from deepnotes.data.images import IMAGE_EXTENSIONS, load_image
from deepnotes.data.vocabulary import Vocabulary
from deepnotes.device import resolve_device
from deepnotes.errors import DeepnotesError
from deepnotes.runs.config import RunConfig, read_config
from deepnotes.runs.folder import load_trained, read_vocab

log = logging.getLogger("deepnotes.predict")

KINDS = ("image", "table", "tokens")  # one label an example: what softmax and top-k mean
INSTEAD = {"lm": "deepnotes generate RUN", "pairs": "deepnotes translate RUN TEXT",
           "tags": "deepnotes evaluate RUN --data FILE"}
BATCH = 1024  # examples through the network at a time
CSV_COLUMNS = ["input", "class", "probability"]


@dataclass
class Inputs:
    """Examples as the run's network reads them, before normalisation: uint8 images
    (m, n_C, n_H, n_W), float32 features (m, n_x) or int64 token ids (m, T_x); and where each
    came from: ``{"image": path}``, ``{"file": path, "row": n}`` or
    ``{"file": path, "line": n}``."""

    x: torch.Tensor
    sources: list[dict]


def predict(run_dir: str | Path, paths: list[str], *, top_k: int = 3,
            device: str = "auto", channels: int | None = None,
            invert: bool = False) -> list[dict]:
    """Each example's source (see :class:`Inputs`) and ``"top"``: its ``top_k`` most probable
    classes, ``[{"class": name, "probability": p}, ...]``, most probable first."""
    if top_k < 1:
        raise DeepnotesError(f"--top-k {top_k}: expected at least 1")
    config = read_config(run_dir)
    inputs = read_inputs(run_dir, config, paths, channels=channels, invert=invert)
    on = resolve_device(device)
    probs = probabilities(load_trained(run_dir, config).to(on), config, inputs.x, on)
    top = probs.topk(min(top_k, probs.shape[1]), dim=1)  # (m, k)
    return [{**source, "top": [{"class": config.classes[int(i)], "probability": float(p)}
                               for p, i in zip(top.values[n], top.indices[n])]}
            for n, source in enumerate(inputs.sources)]


def probabilities(model: torch.nn.Module, config: RunConfig, x: torch.Tensor,
                  device: torch.device) -> torch.Tensor:
    """softmax(network(x_norm)) of raw inputs ``x``, a batch at a time: float32 (m, K) on the
    CPU."""
    normalizer, out = Normalizer.from_dict(config.normalize), []
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(x), BATCH):
            z = model(normalizer(x[i:i + BATCH].to(device)))  # (B, K)
            out.append(torch.softmax(z.float(), dim=1).cpu())
    return torch.cat(out)


def read_inputs(run_dir: str | Path, config: RunConfig, paths: list[str], *,
                channels: int | None = None, invert: bool = False) -> Inputs:
    """The files ``paths`` read as the run read its training data (see the module docstring);
    files of another kind, and options that do not apply, are refused in one line."""
    check_kind(run_dir, config)
    if not paths:
        raise DeepnotesError("predict: no input files given")
    if config.kind == "image":
        return read_images(run_dir, config, paths, channels, invert)
    for option, given in ((f"--channels {channels}", channels is not None), ("--invert", invert)):
        if given:
            raise DeepnotesError(f"{option}: for images, and {run_dir} was trained on "
                                 f"{config.kind} data")
    for path in paths:
        if Path(path).suffix.lower() in IMAGE_EXTENSIONS:
            raise DeepnotesError(f"{path}: an image, and {run_dir} was trained on "
                                 f"{config.kind} data; expected {_expected_files(config)}")
    if config.kind == "table":
        return read_rows(config, paths)
    return read_texts(run_dir, config, paths)


def check_kind(run_dir: str | Path, config: RunConfig) -> None:
    """Refuse a run whose examples do not have one label each, saying what to use instead."""
    if config.kind not in KINDS:
        raise DeepnotesError(f"{run_dir}: this run was trained on {config.kind} data; predict "
                             "takes runs on images, tables or texts with labels; use "
                             f"{INSTEAD.get(config.kind, 'deepnotes evaluate RUN --data FILE')}")
    if config.targets:
        raise DeepnotesError(f"{run_dir}: a multi-task run (--targets), with a yes/no answer "
                             "per task; predict gives one class an example; use deepnotes "
                             "evaluate RUN --data FILE")


def read_images(run_dir, config: RunConfig, paths: list[str], channels: int | None,
                invert: bool) -> Inputs:
    """uint8 (m, n_C, n_H, n_W) at the run's n_C and size, flipped if ``invert``; one warning an
    image that looks inverted against the training images."""
    n_c, size = config.input_shape[0], config.input_shape[-1]
    if channels is not None and channels != n_c:
        raise DeepnotesError(f"--channels {channels}: {run_dir} reads {n_c}-channel images "
                             f"and converts every image to that; leave --channels out")
    for path in paths:
        if Path(path).suffix.lower() in (".csv", ".txt"):
            raise DeepnotesError(f"{path}: {run_dir} was trained on images; expected image "
                                 f"files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    x = torch.stack([load_image(path, size, n_c) for path in paths])  # (m, n_C, n_H, n_W)
    if invert:
        x = 255 - x
    warn_inverted(config, x, paths, invert)
    return Inputs(x, [{"image": path} for path in paths])


def warn_inverted(config: RunConfig, x: torch.Tensor, paths: list[str], invert: bool) -> None:
    """One warning per image whose mean intensity (on [0, 1]) is on the other side of 0.5 from
    the training images' (the run's normaliser's mu, averaged over the channels). Not for a
    fine-tuned run: it keeps its source's normaliser, which says nothing of its own images."""
    if config.transfer is not None:
        return
    means = config.normalize["mean"]  # of x * scale, scale = 1/255: on [0, 1]
    trained = sum(means) / len(means)
    seen = x.float().mean(dim=(1, 2, 3)) / 255  # (m,)
    hint = "it was flipped by --invert; leave that out" if invert else "--invert to flip it"
    for path, mean in zip(paths, seen.tolist()):
        if (trained < 0.5 < mean) or (mean < 0.5 < trained):
            log.warning("%s looks inverted against the run's training images (mean %.2f vs "
                        "%.2f); %s", path, mean, trained, hint)


def read_rows(config: RunConfig, paths: list[str]) -> Inputs:
    """float32 (m, n_x): the CSV files' rows, their columns matched to the training file's by
    name where that file is still there, else by position."""
    features, label = training_columns(config)
    xs, sources = [], []
    for path in paths:
        if Path(path).suffix.lower() != ".csv":
            raise DeepnotesError(f"{path}: expected {_expected_files(config)}")
        x, _ = tables.load_features(path, features, config.in_channels, label)
        xs.append(x)
        sources += [{"file": path, "row": n} for n in range(1, len(x) + 1)]
    return Inputs(torch.cat(xs), sources)


def training_columns(config: RunConfig) -> tuple[list[str] | None, str | None]:
    """(the feature columns, the label column) of the run's training CSV, by name: as the run
    kept them, or for a run made before it kept them, from the file if it is still there; the
    features are None where they cannot be known (a bundled data set, a file moved)."""
    if config.features is not None:
        return config.features, config.label_name
    path = Path(config.data)
    if path.suffix.lower() != ".csv" or not path.is_file():
        return None, config.label_column
    try:
        features, label = tables.columns(path, config.label_column)
    except DeepnotesError:
        return None, config.label_column
    if len(features) != config.in_channels:
        return None, config.label_column
    return features, label


def read_texts(run_dir, config: RunConfig, paths: list[str]) -> Inputs:
    """int64 (m, T_x): each text's ids in the run's vocabulary, padded with 0."""
    vocab = Vocabulary(read_vocab(run_dir, config)[0])
    xs, sources = [], []
    for path in paths:
        unit, numbers, texts = text.read_texts(path, config.errors)
        xs.append(text.encode_texts(path, texts, vocab, config.input_shape[0]))  # (m, T_x)
        sources += [{"file": path, unit: n} for n in numbers]
    return Inputs(torch.cat(xs), sources)


def _expected_files(config: RunConfig) -> str:
    if config.kind == "table":
        features, _ = training_columns(config)
        columns = ", ".join(features) if features else f"{config.in_channels} features"
        return f"CSV files (.csv) of the run's feature columns ({columns})"
    return "text files (one text a line) or CSV files with a 'text' column"


def input_ids(predictions: list[dict]) -> list[str]:
    """How each prediction names its example: the image's path, ``row N`` or ``line N`` (after
    the file's name when the rows or lines come from several files)."""
    several = len({item.get("file") for item in predictions}) > 1
    ids = []
    for item in predictions:
        unit = next(key for key in ("image", "row", "line") if key in item)
        ids.append(item["image"] if unit == "image" else f"{unit} {item[unit]}" if not several
                   else f"{item['file']} {unit} {item[unit]}")
    return ids


def write_csv(path: str | os.PathLike, predictions: list[dict]) -> None:
    """``input,class,probability``: each example's id and most probable class, written
    atomically (a reader sees the old file or the whole new one)."""
    rows = [{"input": name, "class": item["top"][0]["class"],
             "probability": item["top"][0]["probability"]}
            for name, item in zip(input_ids(predictions), predictions)]
    atomic.write_csv(path, CSV_COLUMNS, rows)


def check_out(out: str | os.PathLike, inputs: list[str]) -> Path:
    """``--out FILE.csv``: a .csv in a folder that exists, not one of the inputs."""
    path = Path(out)
    if path.suffix.lower() != ".csv":
        raise DeepnotesError(f"--out {out}: expected a file name ending in .csv")
    if not path.parent.is_dir():
        raise DeepnotesError(f"--out {out}: folder {path.parent} does not exist")
    if path.is_dir() or any(path.resolve() == Path(p).resolve() for p in inputs):
        what = "a folder" if path.is_dir() else "an input file"
        raise DeepnotesError(f"--out {out}: {what}; expected another file for the predictions")
    return path
