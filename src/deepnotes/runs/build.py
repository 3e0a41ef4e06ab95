"""A run's parts, built from its config: the data and its splits, the network, the batches."""

from __future__ import annotations

from pathlib import Path

from deepnotes.data import (
    Batches,
    Dataset,
    Normalizer,
    augment,
    idx,
    load_dataset,
    stratified_split,
)
from deepnotes.data.splits import Splits, hold_out_train_dev
from deepnotes.errors import DeepnotesError
from deepnotes.models import Network, check_side, create_model, model_class
from deepnotes.runs.config import RunConfig
from deepnotes.train import distributed

DEFAULT_MODELS = {"image": "lenet5", "table": "mlp", "tokens": "lstm", "lm": "charlm",
                  "tags": "tagger", "pairs": "seq2seq"}


def build_data(config: RunConfig, progress: bool = False) -> tuple[Dataset, Splits]:
    """(dataset, splits) for a config; images are resized to the model's input size, or to
    --image-size for a model that reads any, and converted to --channels when it is set.
    Under torchrun each node's first rank loads the data first (and builds its decoded cache),
    then the other ranks."""
    size = image_size(config)
    with distributed.node_leader_first():  # a node's first rank builds a data cache, once
        dataset = load_dataset(config.data, image_size=size, data_dir=config.data_dir,
                               skip_bad=config.skip_bad, label_column=config.label_column,
                               progress=progress, max_len=config.max_len, errors=config.errors,
                               seq_len=config.seq_len or 64, min_count=config.min_count or 1,
                               targets=config.targets, cache=config.data_cache,
                               cache_dir=config.cache_dir, channels=config.channels)
    if config.image_size is not None and dataset.kind != "image":
        raise DeepnotesError(f"--image-size {config.image_size}: resizes images, and --data "
                             f"{config.data} holds {dataset.kind} data")
    try:
        splits = stratified_split(dataset.y, config.fractions, config.seed, dataset.test_indices)
    except DeepnotesError as exc:
        raise DeepnotesError(f"--data {config.data}: {exc}") from None
    splits = hold_out_train_dev(dataset.y, splits, config.train_dev or 0.0, config.seed)
    if config.train_examples is not None:  # a learning curve's size
        splits = splits.with_train(config.train_examples, config.seed)
    return dataset, splits


def image_size(config: RunConfig) -> int | None:
    """n_H = n_W of the run's images: --image-size where the model reads it, else the model's
    own input size (lenet5's when none is chosen yet: the default for images); None: the
    data's own (64 for a folder)."""
    name, size = config.model, config.image_size
    if name is None:  # the data decides the model: lenet5 for images
        if size is not None and not _holds_images(config.data):
            return size  # or not images at all, which build_data refuses once it knows
        name = DEFAULT_MODELS["image"]
    cls = model_class(name)
    if size is not None and "image" not in _kinds(cls):
        raise DeepnotesError(f"--image-size {size}: resizes images, and --model {name} reads "
                             f"{'/'.join(_kinds(cls))} data")
    if size is None or size == cls.input_size:
        return cls.input_size
    check_side(name, size, f"--image-size {size}")
    return size


def _kinds(cls) -> tuple[str, ...]:
    return (cls.input_kind,) if isinstance(cls.input_kind, str) else cls.input_kind


def _holds_images(spec: str) -> bool:
    """Whether --data ``spec`` is images, known before reading it: a named image set or a
    folder."""
    return spec.strip().lower() in ("digits", *idx.CLASSES) or Path(spec).is_dir()


def check_model_fits(model_name: str, dataset: Dataset) -> None:
    kinds = _kinds(model_class(model_name))
    if dataset.kind not in kinds:
        raise DeepnotesError(
            f"--model {model_name} reads {' or '.join(kinds)} data but --data {dataset.name} "
            f"holds {dataset.kind} data; try --model {DEFAULT_MODELS[dataset.kind]}"
        )


def build_model(config: RunConfig) -> Network:
    """The run's network, fresh. A model that can average over mirror images at test time
    (fastnet) does so exactly when the run trained on mirror images (``--augment flip``)."""
    name = config.model or DEFAULT_MODELS[config.kind]  # prepare has set it
    cls, extra = model_class(name), dict[str, object]()
    if getattr(cls, "sequence", False):
        extra["task"] = config.kind
    if getattr(cls, "takes_mirror_tta", False):
        extra["mirror_tta"] = "flip" in augment.parse(config.augment)
    if config.rnn_cell is not None:
        if not getattr(cls, "takes_rnn_cell", False):
            raise DeepnotesError(f"--rnn-cell {config.rnn_cell}: --model {name} has no cells to "
                                 "choose (gru, lstm, charlm and tagger do)")
        extra["rnn_cell"] = config.rnn_cell
    return create_model(name, num_classes=len(config.classes),
                        in_channels=config.in_channels, **extra)


def batches(config: RunConfig, dataset: Dataset, indices, device, train: bool = False,
            shard=(0, 1)) -> Batches:
    """Training batches (shuffled, augmented, no short last batch; this rank's slice of each
    under torchrun) or evaluation batches."""
    normalizer = Normalizer.from_dict(config.normalize)
    size = config.mini_batch if train else max(512, config.mini_batch)
    kinds = augment.parse(config.augment) if train else ()
    return Batches(dataset.x, dataset.y, indices, size, normalizer, shuffle=train,
                   drop_last=train, seed=config.seed, device=device,
                   augment=augment.Augment(kinds) if kinds else None, shard=shard,
                   stream=dataset.on_disk, readahead=dataset.readahead,
                   order="quasi-random" if train and config.data_order == "quasi-random"
                   else "random")
