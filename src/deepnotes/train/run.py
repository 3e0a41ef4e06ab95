"""A run folder: everything one training run needs to be rebuilt, resumed, evaluated and shown.

config.json, model.safetensors, state.safetensors + state.json, history.csv, metrics.json,
learning_curves.png, confusion_matrix.png; every file written atomically.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import torch

import deepnotes
from deepnotes import atomic, metrics, multitask
from deepnotes.data import Batches, Dataset, Normalizer, augment, load_dataset, stratified_split
from deepnotes.data.splits import hold_out_train_dev
from deepnotes.errors import DeepnotesError
from deepnotes.models import create_model, model_class
from deepnotes.train.checkpoint import committed_weights, load_model_state
from deepnotes.train.schema import check_config
from deepnotes.train.trainer import evaluate

DEFAULTS = {
    "model": None,  # lenet5 for images, mlp for tables
    "data": "digits",
    "data_dir": None,
    "label_column": None,
    "skip_bad": False,
    "epochs": 20,
    "batch_size": 64,
    "lr": None,  # the optimizer's default alpha (deepnotes.optim.DEFAULT_LRS)
    "optimizer": "adam",
    "beta": None,  # the optimizer's default beta (beta1 for Adam)
    "weight_decay": 0.0,
    "max_len": None,  # sequences: cut longer ones (with a warning)
    "errors": "strict",  # text: undecodable bytes stop ("strict") or become U+FFFD ("replace")
    "seq_len": None,  # character language model: steps a training sequence (64)
    "min_count": None,  # text: rarer tokens become <unk> (1: keep every token)
    "targets": None,  # a CSV's label columns of several binary tasks (deepnotes.multitask)
    "schedule": "onecycle",
    "seed": 0,
    "fractions": [0.8, 0.1, 0.1],
    "augment": None,  # "crop", "flip" or "crop,flip"
    "device": "auto",
    "bf16": False,  # the same as precision "bf16" (kept for runs made before --precision)
    "precision": None,  # "32", "bf16" or "16" (CUDA); None: "bf16" when bf16 is set, else "32"
    "channels_last": False,
    "compile": False,
    "train_dev": 0.0,  # share of the training pool held out as the train-dev split
    "recipe": None,  # the named defaults the run started from (deepnotes.train.recipes)
}


DEFAULT_MODELS = {"image": "lenet5", "table": "mlp", "tokens": "lstm", "lm": "charlm",
                  "tags": "tagger", "pairs": "seq2seq"}


def default_model(dataset: Dataset) -> str:
    return DEFAULT_MODELS[dataset.kind]


def build_data(config: dict, progress: bool = False):
    """(dataset, splits) for a config; images are resized to the model's input size."""
    size = model_class(config.get("model") or "lenet5").input_size  # lenet5: the default for images
    dataset = load_dataset(config["data"], image_size=size, data_dir=config.get("data_dir"),
                           skip_bad=config.get("skip_bad", False),
                           label_column=config.get("label_column"), progress=progress,
                           max_len=config.get("max_len"), errors=config.get("errors", "strict"),
                           seq_len=config.get("seq_len") or 64,
                           min_count=config.get("min_count") or 1,
                           targets=config.get("targets"))
    try:
        splits = stratified_split(dataset.y, config["fractions"], config["seed"],
                                  dataset.test_indices)
    except DeepnotesError as exc:
        raise DeepnotesError(f"--data {config['data']}: {exc}") from None
    splits = hold_out_train_dev(dataset.y, splits, config.get("train_dev") or 0.0, config["seed"])
    return dataset, splits


def check_model_fits(model_name: str, dataset: Dataset) -> None:
    kinds = model_class(model_name).input_kind
    kinds = (kinds,) if isinstance(kinds, str) else kinds
    if dataset.kind not in kinds:
        raise DeepnotesError(
            f"--model {model_name} reads {' or '.join(kinds)} data but --data {dataset.name} "
            f"holds {dataset.kind} data; try --model {default_model(dataset)}"
        )


def build_model(config: dict) -> torch.nn.Module:
    """The run's network, fresh. A model that can average over mirror images at test time
    (fastnet) does so exactly when the run trained on mirror images (``--augment flip``)."""
    cls, extra = model_class(config["model"]), {}
    if getattr(cls, "sequence", False):
        extra["task"] = config["kind"]
    if getattr(cls, "takes_mirror_tta", False):
        extra["mirror_tta"] = "flip" in augment.parse(config.get("augment"))
    return create_model(config["model"], num_classes=len(config["classes"]),
                        in_channels=config["in_channels"], **extra)


def batches(config: dict, dataset: Dataset, indices, device, train: bool = False,
            shard=(0, 1)) -> Batches:
    """Training batches (shuffled, augmented, no short last batch; this rank's slice of each
    under torchrun) or evaluation batches."""
    normalizer = Normalizer.from_dict(config["normalize"])
    size = config["batch_size"] if train else max(512, config["batch_size"])
    kinds = augment.parse(config.get("augment")) if train else ()
    return Batches(dataset.x, dataset.y, indices, size, normalizer, shuffle=train,
                   drop_last=train, seed=config["seed"], device=device,
                   augment=augment.Augment(kinds) if kinds else None, shard=shard)


def split_metrics(model, config: dict, dataset: Dataset, splits, device,
                  names=None) -> dict:
    """metrics.json: for each split (all that ``splits`` holds unless ``names`` are given:
    train, train_dev, dev, test), accuracy, loss, P/R/F1 and the confusion matrix."""
    out = {}
    for name in names or splits.names():
        idx = getattr(splits, name)
        result = evaluate(model, batches(config, dataset, idx, device),
                          precision=precision_of(config))
        if config.get("targets"):  # several binary tasks: deepnotes.multitask
            report = multitask.report(result["y_true"], result["y_pred"], config["classes"])
        else:
            report = metrics.classification_report(result["y_true"], result["y_pred"],
                                                   num_classes=len(config["classes"]),
                                                   class_names=config["classes"])
        if config["kind"] in ("lm", "pairs"):
            macro_over_present(report)
        out[name] = {"accuracy": report.pop("accuracy"), "loss": result["loss"], **report}
        out[name].update(sequence_metrics(model, config, dataset, idx, result["loss"]))
    return out


def sequence_metrics(model, config: dict, dataset: Dataset, idx, loss: float) -> dict:
    """What a sequence task is judged by besides per-token accuracy: a language model's
    perplexity exp(L), an encoder-decoder's exact match of whole greedy outputs."""
    import math

    if config["kind"] == "lm":
        return {"perplexity": math.exp(min(loss, 700.0))}
    if config["kind"] == "pairs":
        from deepnotes.models.sequence import exact_match

        return {"exact_match": exact_match(model, dataset.x[idx], dataset.y[idx])}
    return {}


def macro_over_present(report: dict) -> None:
    """A vocabulary's macro P/R/F1 over the tokens that occur (as targets or predictions): the
    specials <pad>, <unk>, <bos> are never targets and would count as zeros."""
    import numpy as np

    cm = np.asarray(report["confusion_matrix"])
    present = [row for row, n in zip(report["per_class"], cm.sum(0) + cm.sum(1)) if n > 0]
    for key in ("precision", "recall", "f1"):
        report[key] = float(np.mean([row[key] for row in present])) if present else 0.0


def precision_of(config: dict) -> str:
    """A run's --precision: its own, or "bf16" for runs that set only the older --bf16."""
    return config.get("precision") or ("bf16" if config.get("bf16") else "32")


# added after the first release
OPTIONAL_KEYS = {"beta": None, "weight_decay": 0.0, "max_len": None, "errors": "strict",
                 "seq_len": None, "min_count": None, "targets": None, "precision": None,
                 "channels_last": False, "compile": False, "train_dev": 0.0, "recipe": None}
RUN_KEYS = [*(k for k in DEFAULTS if k not in OPTIONAL_KEYS), "classes", "in_channels",
            "input_shape", "kind", "normalize"]


def read_config(run_dir: str | Path) -> dict:
    """A run's config.json, checked to hold everything needed to rebuild model and data, each
    field of the right type and range (:mod:`deepnotes.train.schema`)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise DeepnotesError(f"{run_dir}: not a deepnotes run folder (no config.json)")
    try:
        config = json.loads(path.read_text())
    except (ValueError, RecursionError) as exc:  # also bad UTF-8, 5000 digits, deep nesting
        raise DeepnotesError(f"{path}: not valid JSON ({str(exc).splitlines()[0]})") from None
    if isinstance(config, dict) and any(k not in config for k in RUN_KEYS):
        missing = ", ".join(k for k in RUN_KEYS if k not in config)
        raise DeepnotesError(f"{path}: incomplete run config, missing {missing}")
    return check_config({**OPTIONAL_KEYS, **config} if isinstance(config, dict) else config, path)


def write_json(path: Path, obj) -> None:
    atomic.write_text(path, json.dumps(obj, indent=1) + "\n")


def provenance() -> dict:
    """Versions and the git commit, so a result can be traced to the code that made it."""
    return {"deepnotes": deepnotes.__version__, "torch": torch.__version__,
            "python": platform.python_version(), "git_commit": _git_commit(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=os.path.dirname(__file__))
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def load_trained(run_dir: str | Path, config: dict) -> torch.nn.Module:
    """The run's model with its trained weights (``model.safetensors``, or the committed
    checkpoint's where a kill left that file behind)."""
    model = build_model(config)
    load_model_state(model, committed_weights(Path(run_dir)), Path(run_dir) / "model.safetensors")
    return model.eval()
