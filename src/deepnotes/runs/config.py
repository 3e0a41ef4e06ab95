"""A run's settings: :class:`RunConfig`, what config.json holds, with its defaults and its rules.

The options of ``deepnotes train`` are the fields of :class:`RunConfig` under the same names
(``--batch-size`` is ``batch_size``); ``prepare`` fills in what the data decides (classes,
in_channels, input_shape, kind, normalize, splits). config.json is :meth:`RunConfig.to_dict`;
reading one (:func:`read_config`) fills in the fields added after the first release, then checks
every field's type and range and the cross-field rules, each failure one line::

    runs/x/config.json: field 'in_channels': expected an integer from 1 to 1048576, found "x"

Fields this version does not know (a newer deepnotes may add some) are kept in ``extras`` and
written back unchanged.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from deepnotes import atomic
from deepnotes.data import NAMED, Batches, augment
from deepnotes.data.images import CACHE_CHOICES, MAX_SIDE
from deepnotes.data.loader import ORDERS
from deepnotes.data.splits import check_fractions
from deepnotes.data.text import ERRORS
from deepnotes.errors import DeepnotesError
from deepnotes.models import list_models, model_class, reads_side
from deepnotes.models.sequence import RNN_CELLS
from deepnotes.optim import BETA_NAMES, check_schedule, list_optimizers
from deepnotes.train.history import MONITORS
from deepnotes.train.recipes import list_recipes
from deepnotes.train.schema import (
    COUNT,
    KINDS,
    PRECISIONS,
    SPLIT_NAMES,
    WIDTH,
    Bad,
    boolean,
    check_fields,
    integer,
    known,
    library,
    list_of,
    matching,
    names,
    number,
    one_of,
    optional,
    record,
    string,
)
from deepnotes.train.tasks import CLASSIFIED, PER, Task, task_for

FORMAT = "deepnotes run"  # config.json's mark: deepnotes made this folder
FORMAT_VERSION = 1
MARKER = {"format": FORMAT, "format_version": FORMAT_VERSION}


@dataclass
class RunConfig:
    """Everything needed to rebuild a run's data and model and to train it again."""

    model: str | None = None  # lenet5 for images, mlp for tables (runs.build.DEFAULT_MODELS)
    data: str = "digits"
    data_dir: str | None = None
    label_column: str | None = None
    skip_bad: bool = False
    epochs: int = 20
    batch_size: int | None = None  # None: 64, fewer for a small training set (session.batch_size)
    lr: float | None = None  # the optimizer's default alpha (deepnotes.optim.DEFAULT_LRS)
    optimizer: str = "adam"
    beta: float | None = None  # the optimizer's default beta (beta1 for Adam)
    weight_decay: float = 0.0
    eps: float | None = None  # rmsprop's and adam's eps (the rule's default, 1e-8)
    eps_inside_sqrt: bool = False  # alpha dW / sqrt(S + eps), as the notes' Adam
    bias_correction: bool = True  # adam: V / (1 - beta1^t), S / (1 - beta2^t)
    rnn_cell: str | None = None  # a GRU or LSTM variant (models.sequence.RNN_CELLS)
    max_len: int | None = None  # sequences: cut longer ones (with a warning)
    errors: str = "strict"  # text: undecodable bytes stop ("strict") or become U+FFFD
    seq_len: int | None = None  # character language model: steps a training sequence (64)
    min_count: int | None = None  # text: rarer tokens become <unk> (1: keep every token)
    targets: list[str] | None = None  # a CSV's label columns of several binary tasks
    multitask_loss: str = "present"  # their loss over the labels present (1/|P|) or 1/m
    # each class's weight in the loss; "balanced" until a fresh run resolves it to numbers
    class_weights: list[float] | str | None = None
    schedule: str = "onecycle"
    seed: int = 0
    fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    augment: str | None = None  # a comma list of crop, resized-crop, flip
    device: str = "auto"
    bf16: bool = False  # the same as precision "bf16" (kept for runs made before --precision)
    precision: str | None = None  # "32", "bf16" or "16"; None: "bf16" when bf16 is set
    channels_last: bool = False
    compile: bool = False
    cuda_graphs: bool = False  # replay the network's forward and backward (one CUDA GPU)
    train_dev: float = 0.0  # share of the training pool held out as the train-dev split
    recipe: str | None = None  # the named defaults the run started from (train.recipes)
    image_size: int | None = None  # image folders: n_H = n_W (the model's own size, else 64)
    channels: int | None = None  # images read as grey (1) or RGB (3); None: the data's own
    data_cache: str = "auto"  # image folders: decoded cache on disk ("on"), in memory ("off")
    cache_dir: str | None = None  # where the decoded caches live (data.cache.cache_root)
    data_order: str = "auto"  # random or quasi-random batches; auto: chosen by a fresh run
    monitor: str = "dev_loss"  # the dev metric that chooses the kept epoch (train.history)
    early_stop: int | None = None  # stop after this many epochs without improvement
    min_delta: float = 0.0  # what counts as an improvement of the monitor
    tensorboard: bool = False  # learning curves for TensorBoard in RUN/tensorboard
    # what the data decides (filled in by runs.session.prepare)
    classes: list[str] = field(default_factory=list)
    in_channels: int = 0
    input_shape: list[int] = field(default_factory=list)
    kind: str = ""  # Dataset.kind: image, table, tokens, lm, tags or pairs
    normalize: dict = field(default_factory=dict)  # data.Normalizer.to_dict
    splits: dict | None = None  # the number of examples of each split
    features: list[str] | None = None  # a CSV table's feature columns, in the network's order
    label_name: str | None = None  # and its label column (predict matches new CSVs by name)
    train_examples: int | None = None  # a learning curve's m: the first m of a seeded shuffle
    # written with the run
    transfer: dict | None = None  # deepnotes finetune: the source, the frozen groups
    trial: dict | None = None  # deepnotes tune: the trial's number and sampled values
    provenance: dict | None = None
    format: str | None = None
    format_version: int | None = None
    extras: dict = field(default_factory=dict)  # fields of a newer deepnotes, kept as they are

    def optimizer_variants(self) -> dict:
        """The keywords of the rule's variants this run sets (create_optimizer's)."""
        out: dict = {} if self.eps is None else {"eps": self.eps}
        if self.eps_inside_sqrt:
            out["eps_inside_sqrt"] = True
        if not self.bias_correction:
            out["bias_correction"] = False
        return out

    @classmethod
    def options(cls) -> list[str]:
        """The fields a command line sets (``deepnotes train``'s options)."""
        return [f.name for f in dataclasses.fields(cls)][:OPTION_COUNT]

    @property
    def mini_batch(self) -> int:
        """batch_size, which :func:`deepnotes.runs.session.prepare` chooses when none is given."""
        if self.batch_size is None:
            raise DeepnotesError("RunConfig.batch_size: not chosen yet (runs.session.prepare "
                                 "chooses it from the data)")
        return self.batch_size

    @property
    def data_name(self) -> str:
        """The data's short name in folder names: a named set's own, else the file's stem."""
        return self.data if self.data in NAMED else Path(self.data).stem

    @property
    def amp_precision(self) -> str:
        """The run's --precision: its own, or "bf16" for runs that set only the older --bf16."""
        return self.precision or ("bf16" if self.bf16 else "32")

    @property
    def task(self) -> Task:
        """What is learned from the run's data (:mod:`deepnotes.train.tasks`)."""
        weights = self.class_weights if isinstance(self.class_weights, list) else None
        return task_for(self.kind, multitask=bool(self.targets), per=self.multitask_loss,
                        class_weights=weights)

    def updated(self, **changes) -> RunConfig:
        """A copy with ``changes``; the copy's lists and dicts are its own."""
        return dataclasses.replace(self.copy(), **changes)

    def copy(self) -> RunConfig:
        return RunConfig.from_dict(json.loads(json.dumps(self.to_dict())))

    def to_dict(self) -> dict:
        """config.json's object: the fields (those written with the run only once set), then the
        extras."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "extras" or (f.name in LATE_FIELDS and value is None):
                continue
            out[f.name] = value
        return {**out, **self.extras}

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """The config of a dict with any of the fields (unknown keys go to ``extras``)."""
        known_fields = {f.name for f in dataclasses.fields(cls)} - {"extras"}
        return cls(**{k: v for k, v in d.items() if k in known_fields},
                   extras={k: v for k, v in d.items() if k not in known_fields})

    def write(self, path: Path) -> None:
        """config.json, checked first by the rules :func:`read_config` applies: what one
        command writes, the next can read."""
        write_json(path, check_config(self.to_dict(), path))


OPTION_COUNT = [f.name for f in dataclasses.fields(RunConfig)].index("classes")
LATE_FIELDS = ("splits", "features", "label_name", "train_examples", "transfer", "trial",
               "provenance", "format", "format_version")
DEFAULTS = {name: getattr(RunConfig(), name) for name in RunConfig.options()}
# added after the first release: a config.json without them gets the default
OPTIONAL_KEYS = ("beta", "weight_decay", "max_len", "errors", "seq_len", "min_count", "targets",
                 "precision", "channels_last", "compile", "cuda_graphs", "train_dev", "recipe",
                 "image_size",
                 "data_cache", "cache_dir", "data_order", "monitor", "early_stop",
                 "min_delta", "tensorboard", "eps", "eps_inside_sqrt", "bias_correction",
                 "rnn_cell", "multitask_loss", "channels", "class_weights")
RUN_KEYS = [*(k for k in DEFAULTS if k not in OPTIONAL_KEYS), "classes", "in_channels",
            "input_shape", "kind", "normalize"]


def read_config(run_dir: str | Path) -> RunConfig:
    """A run's config.json, checked to hold everything needed to rebuild model and data, each
    field of the right type and range."""
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
    if isinstance(config, dict):
        config = {**{k: DEFAULTS[k] for k in OPTIONAL_KEYS}, **config}
    return RunConfig.from_dict(check_config(config, path))


def write_json(path: Path, obj) -> None:
    atomic.write_text(path, json.dumps(obj, indent=1) + "\n")


# -- the rules -------------------------------------------------------------------------------------

def fractions(v):
    list_of(number(0), 3, 3)(v)
    try:
        check_fractions(v)
    except DeepnotesError:
        raise Bad("three shares (train, dev, test) >= 0 that sum to 1, train > 0") from None


NORMALIZE = record({"mean": list_of(number()), "std": list_of(number(0)),
                    "scale": number(0, 1, above=True)})  # Normalizer.to_dict: 1/255 or 1
TRANSFER = record({"source": string, "source_model": known("model", list_models),  # finetune's
                   "source_classes": optional(names), "layer_groups": names,
                   "freeze": integer(0), "freeze_option": string, "per_class": number(0),
                   "gradual": boolean, "lr_decay": number(1)})

CONFIG = {  # field -> checker: every option, then the data's
    "model": known("model", list_models), "data": string, "data_dir": optional(string),
    "label_column": optional(string), "skip_bad": boolean,
    "epochs": integer(1, COUNT), "batch_size": optional(integer(1, COUNT)),
    "lr": optional(number(0, above=True)), "optimizer": known("optimizer", list_optimizers),
    "beta": optional(number(0, 1, below=True)), "weight_decay": number(0),
    "max_len": optional(integer(1, COUNT)), "errors": one_of(*ERRORS),
    "seq_len": optional(integer(1, COUNT)), "min_count": optional(integer(1, COUNT)),
    "targets": optional(names), "multitask_loss": one_of(*PER),
    "class_weights": optional(list_of(number(0, above=True), 2)),
    "schedule": library(check_schedule),
    "seed": integer(0, Batches.MAX_SEED), "fractions": fractions,
    "augment": optional(library(augment.parse,
                                "a comma list of crop, resized-crop, flip, or none")),
    "device": matching(r"\s*(auto|cpu|mps|cuda(:\d+)?)\s*", "auto, cpu, cuda, cuda:N or mps"),
    "bf16": boolean, "precision": optional(one_of(*PRECISIONS)),
    "channels_last": boolean, "compile": boolean, "cuda_graphs": boolean,
    "train_dev": number(0, 1, below=True), "recipe": optional(known("recipe", list_recipes)),
    "image_size": optional(integer(1, MAX_SIDE)), "channels": optional(one_of(1, 3)),
    "data_cache": one_of(*CACHE_CHOICES),
    "cache_dir": optional(string), "data_order": one_of("auto", *ORDERS),
    "monitor": one_of(*MONITORS), "early_stop": optional(integer(1, COUNT)),
    "min_delta": number(0), "tensorboard": boolean, "eps": optional(number(0)),
    "eps_inside_sqrt": boolean, "bias_correction": boolean,
    "rnn_cell": optional(one_of(*(v for kinds in RNN_CELLS.values() for v in kinds))),
    "classes": list_of(string, 2), "in_channels": integer(1, WIDTH),
    "input_shape": list_of(integer(1, WIDTH), 1, 3), "kind": one_of(*KINDS),
    "normalize": NORMALIZE,
}
CONFIG_EXTRAS = {  # may be absent; when present they follow the rule
    "splits": record({k: integer(0) for k in SPLIT_NAMES}, required=()), "provenance": record({}),
    "transfer": TRANSFER, "trial": optional(record({})), "format": one_of(FORMAT),
    "format_version": integer(1, FORMAT_VERSION), "features": names, "label_name": string,
    "train_examples": integer(1, COUNT)}


def check_config(config, path) -> dict:
    """``config`` (config.json, optional keys filled in) if it follows :data:`CONFIG` and the
    cross-field rules; else a one-line DeepnotesError naming ``path``, the field, the rule."""
    check_fields(config, path, CONFIG, CONFIG_EXTRAS, "an object of run settings")
    message = _config_fits(config)
    if message:
        raise DeepnotesError(f"{path}: {message}")
    return config


def _config_fits(c: dict) -> str | None:
    """The cross-field rules: the model reads the kind of data, input_shape and the normaliser's
    mean and std fit in_channels (n_C of images, n_x of tables), the options fit one another."""
    n, shape, kind, cls = c["in_channels"], c["input_shape"], c["kind"], model_class(c["model"])
    kinds = (cls.input_kind,) if isinstance(cls.input_kind, str) else cls.input_kind
    if kind not in kinds:
        return f"fields 'model' and 'kind': {c['model']} reads {'/'.join(kinds)} data, not {kind}"
    side = c.get("image_size") or cls.input_size or shape[-1]
    expected = {"image": [n, side, side], "table": [n]}.get(kind, shape[:1])
    if shape != expected:
        return (f"fields 'input_shape' and 'in_channels': {c['model']} on {kind} data with "
                f"in_channels {n} expects input_shape {expected}, found {shape}")
    if kind == "image" and not reads_side(c["model"], side):
        return (f"fields 'image_size' and 'model': {c['model']} cannot read images of {side} "
                "pixels a side")
    if len(set(c["classes"])) != len(c["classes"]) or "" in c["classes"]:
        return "field 'classes': expected distinct, non-empty class names"
    width = n if kind in ("image", "table") else 0  # token ids are not normalised
    for key in ("mean", "std"):
        if len(c["normalize"][key]) != width:
            return (f"fields 'normalize.{key}' and 'in_channels': expected {width} values for "
                    f"{kind} data with in_channels {n}, found {len(c['normalize'][key])}")
    if c["channels"] is not None and (kind != "image" or c["channels"] != n):
        return (f"fields 'channels' and 'in_channels': images read with {c['channels']} "
                f"channels, found {kind} data with in_channels {n}")
    if augment.parse(c["augment"]) and kind != "image":
        return f"fields 'augment' and 'kind': augmentation is for images, not {kind} data"
    if c["beta"] is not None and c["optimizer"] not in BETA_NAMES:
        return f"fields 'beta' and 'optimizer': {c['optimizer']} has no beta, found {c['beta']}"
    if c["targets"] and (c["targets"] != c["classes"] or kind != "table"):
        return "fields 'targets' and 'classes': a multi-task table run's classes are its targets"
    if c.get("features") is not None and (kind != "table" or len(c["features"]) != n):
        return (f"fields 'features' and 'in_channels': a table run's {n} feature columns, found "
                f"{len(c['features'])}")
    if c.get("label_name") is not None and c.get("features") is None:
        return "fields 'label_name' and 'features': a table run's label column, beside its features"
    if c["class_weights"] is not None and (len(c["class_weights"]) != len(c["classes"]) or
                                           c["targets"] or kind not in CLASSIFIED):
        return ("fields 'class_weights' and 'classes': one weight a class, for a run that "
                "gives each example one class")
    if c["multitask_loss"] != "present" and not c["targets"]:
        return "fields 'multitask_loss' and 'targets': the multi-task loss of a run without targets"
    return None
