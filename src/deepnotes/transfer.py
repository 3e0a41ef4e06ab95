"""Transfer learning: pre-train on task A, fine-tune on task B.

The notes: transfer from A to B makes sense when A and B have the same input x, there is a lot
more data for A than for B, and A's low-level features could help B. Pre-training learns the
weights on A; fine-tuning replaces the output (softmax) layer with one for B's classes and trains
on B, with the first layers frozen. "The more data you have, the fewer layers you need to freeze,
and the more layers you can train."

A network is cut into *layer groups*, in forward order, without the head: a group is one layer
with weights (a convolution, a fully connected layer, a recurrent layer) together with the batch
norm, activation, pooling and dropout layers around it; a residual stage (ResNet's ``layer1``) or
an Inception module counts as one group. ``freeze(model, n)`` freezes the first n groups: their
parameters get no gradient, and they run in inference mode (batch norm uses its running mu and
sigma^2, dropout is off), so a frozen group is a fixed function::

    >>> from deepnotes import transfer
    >>> from deepnotes.models import create_model
    >>> model = create_model("lenet5", num_classes=5)
    >>> transfer.group_names(model)
    ['conv.0', 'conv.3', 'fc.1', 'fc.3']
    >>> transfer.auto_freeze(per_class=20, num_groups=4)  # little data: train the head only
    4
    >>> transfer.freeze(model, 4)
    ['conv.0', 'conv.3', 'fc.1', 'fc.3']

When everything but the head is frozen, the network up to the head is a fixed function, so its
outputs (the features a[L-1]) are computed once, saved to disk and the softmax layer is trained on
them (:func:`cached_features`, :func:`fit_head_on_cache`): the notes' advice for a small B.
:func:`optimizer_groups` gives earlier groups lower learning rates (discriminative fine-tuning)
and :func:`unfreeze_next` thaws the frozen groups one an epoch, top first (gradual unfreezing).
The whole ``deepnotes finetune`` flow is :func:`prepare_finetune` then :func:`fit_finetune`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path

import torch
from torch import nn

from deepnotes.errors import DeepnotesError
from deepnotes.train.checkpoint import check_finite, committed_weights
from deepnotes.train.folder import MARKER

log = logging.getLogger(__name__)

CACHE_FORMAT = "deepnotes-features-1"  # part of every cache key: a new format never reads old files
FREEZE_WORDS = ("auto", "none", "all-but-head")


# -- layer groups and freezing ---------------------------------------------------------------

def _layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's layers in forward order, head left out; each family says which of its
    containers hold single layers (opened) and which hold stages or modules (kept whole)."""
    from deepnotes.models.classifier import ConvClassifier
    from deepnotes.models.fastnet import FastNet
    from deepnotes.models.lenet import LeNet5
    from deepnotes.models.mlp import MLP

    opened = {LeNet5: ("conv", "fc"), MLP: ("body",), ConvClassifier: ("features", "classifier"),
              FastNet: ("body",)}
    opens = next((names for cls, names in opened.items() if isinstance(model, cls)), ())
    head, out = model.head, []
    for name, child in model.named_children():
        if child is head or name.startswith("aux"):  # GoogLeNet's auxiliary classifiers: outputs
            continue
        if name in opens:
            out += [(f"{name}.{i}", m) for i, m in child.named_children() if m is not head]
        else:
            out.append((name, child))
    return out


def _starts_group(module: nn.Module) -> bool:
    """A layer with weights (batch norm aside) or a dropout layer (which feeds the next one)."""
    from deepnotes.nn import BatchNorm1d, BatchNorm2d

    norms = (BatchNorm1d, BatchNorm2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)
    if isinstance(module, nn.Dropout):
        return True
    return not isinstance(module, norms) and any(True for _ in module.parameters())


def layer_groups(model: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """(name, modules) of each layer group, input first, head excluded (see the module doc); a
    group is named after its layer with weights."""
    groups: list[list] = []  # [name, modules, has a layer with weights]
    for name, module in _layers(model):
        if not groups or (_starts_group(module) and groups[-1][2]):
            groups.append([name, [], False])
        group = groups[-1]
        group[1].append(module)
        if not group[2] and any(True for _ in module.parameters()):
            group[0], group[2] = name, True
    if len(groups) > 1 and not groups[-1][2]:  # trailing pooling / dropout: the last group's
        groups[-2][1].extend(groups.pop()[1])
    return [(name, modules) for name, modules, _ in groups]


def group_names(model: nn.Module) -> list[str]:
    return [name for name, _ in layer_groups(model)]


def _eval_before_forward(module: nn.Module, args) -> None:
    module.eval()  # a frozen group is a fixed function, whatever mode the trainer set


def _set_frozen(modules: list[nn.Module], frozen: bool) -> None:
    for module in modules:
        module.requires_grad_(not frozen)
        handle = module.__dict__.pop("_frozen_hook", None)
        if handle is not None:
            handle.remove()
        if frozen:
            module.__dict__["_frozen_hook"] = module.register_forward_pre_hook(
                _eval_before_forward)


def freeze(model: nn.Module, n: int) -> list[str]:
    """Freeze the first ``n`` layer groups (and unfreeze the rest); return the frozen names."""
    groups = layer_groups(model)
    check_freeze(n, groups)
    for i, (_, modules) in enumerate(groups):
        _set_frozen(modules, i < n)
    model.head.requires_grad_(True)
    return [name for name, _ in groups[:n]]


def check_freeze(n: int, groups: list) -> None:
    if not 0 <= n <= len(groups):
        names = ", ".join(name for name, _ in groups)
        raise DeepnotesError(f"--freeze {n}: the model has {len(groups)} layer groups ({names}); "
                             f"expected 0 to {len(groups)}, auto, none or all-but-head")


def unfreeze_next(model: nn.Module, floor: int = 0) -> str | None:
    """Gradual unfreezing: thaw the last frozen group at or above index ``floor``; its name, or
    None when every group from ``floor`` on is trainable already."""
    groups = layer_groups(model)
    for i in range(len(groups) - 1, floor - 1, -1):
        name, modules = groups[i]
        if any(not p.requires_grad for m in modules for p in m.parameters()):
            _set_frozen(modules, False)
            return name
    return None


def auto_freeze(per_class: float, num_groups: int) -> int:
    """How many of ``num_groups`` layer groups to freeze for ``per_class`` training examples of B
    per class. The notes: the more data B has, the fewer layers to freeze. The rule:

    - n <= 100 examples a class: freeze every group and train the softmax layer only;
    - n >= 10,000: freeze none (A's weights are only the starting point);
    - in between, each tenfold more data unfreezes half of the groups:
      N = round(L * (1 - log10(n / 100) / 2)).
    """
    if per_class <= 100:
        return num_groups
    trainable = min(1.0, math.log10(per_class / 100) / 2)
    return round(num_groups * (1 - trainable))


def explain_auto(per_class: float, num_groups: int) -> str:
    """One line: the rule and the choice it makes."""
    n = auto_freeze(per_class, num_groups)
    return (f"--freeze auto: {per_class:.0f} training examples per class -> freezing {n} of "
            f"{num_groups} layer groups (rule: n <= 100 all, n >= 10000 none, else "
            "round(L * (1 - log10(n / 100) / 2)))")


def parse_freeze(option: str | int, num_groups: int, per_class: float) -> int:
    """--freeze auto | none | all-but-head | N -> the number of groups to freeze."""
    text = str(option).strip()
    if text == "auto":
        return auto_freeze(per_class, num_groups)
    if text in ("none", "all-but-head"):
        return 0 if text == "none" else num_groups
    if not text.lstrip("-").isdigit():
        raise DeepnotesError(f"--freeze {option}: expected auto, none, all-but-head or a number "
                             f"of layer groups 0 to {num_groups}")
    return int(text)


def optimizer_groups(model: nn.Module, lr: float, decay: float = 1.0, frozen: int = 0) -> list:
    """Parameter groups of groups ``frozen``.. and the head; discriminative learning rates:
    group l of L gets alpha / decay^(L - l), the head alpha (ULMFiT uses decay 2.6)."""
    groups = layer_groups(model)
    out = [{"params": [p for m in modules for p in m.parameters()], "lr": lr / decay ** (len(
        groups) - i)} for i, (_, modules) in enumerate(groups) if i >= frozen]
    out = [g for g in out if g["params"]]
    grouped = {id(p) for g in out for p in g["params"]}
    grouped |= {id(p) for _, modules in groups[:frozen] for m in modules for p in m.parameters()}
    rest = [p for p in model.parameters() if id(p) not in grouped]  # the head (and aux outputs)
    return [{"params": rest, "lr": lr}, *out]


# -- the feature cache -----------------------------------------------------------------------

def _hash_tensor(h, name: str, t: torch.Tensor) -> None:
    t = t.detach().to("cpu").contiguous()
    h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def feature_key(model: nn.Module, x: torch.Tensor, normalize: dict) -> str:
    """A hash of everything the features depend on: the architecture, every weight and buffer
    below the head, the normalisation, and the examples. Any change gives another key, so a stale
    cache is never read."""
    h = hashlib.sha256(CACHE_FORMAT.encode())
    h.update(type(model).__qualname__.encode())
    h.update(repr(_layers(model)).encode())  # the architecture below the head
    prefix = head_prefix(model)
    for name, t in model.state_dict().items():
        if not name.startswith(prefix):
            _hash_tensor(h, name, t)
    h.update(json.dumps(normalize, sort_keys=True).encode())
    _hash_tensor(h, "x", x)
    return h.hexdigest()[:32]


@torch.inference_mode()
def compute_features(model: nn.Module, x: torch.Tensor, normalize: dict, device,
                     batch_size: int = 512) -> torch.Tensor:
    """a[L-1] = model.features(x) for raw examples x (m, ...), in inference mode: (m, n_f)."""
    from deepnotes.data import Normalizer

    norm, was_training = Normalizer.from_dict(normalize), model.training
    model.eval()
    out = [model.features(norm(x[i:i + batch_size].to(device))).float().cpu()
           for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(out)


def cached_features(model: nn.Module, x: torch.Tensor, normalize: dict, cache_dir: str | Path,
                    device="cpu") -> tuple[torch.Tensor, bool]:
    """(features of x, whether they came from the cache); computed and saved on a miss."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save

    from deepnotes import atomic

    path = Path(cache_dir) / f"{feature_key(model, x, normalize)}.safetensors"
    if path.is_file():
        try:
            features = load_file(str(path))["features"]
            if len(features) == len(x):
                return features, True
        except (SafetensorError, OSError, KeyError) as exc:
            log.warning("feature cache %s is unreadable (%s); computing again", path, exc)
    features = compute_features(model, x, normalize, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.sweep(path.parent)  # what killed writers left
    atomic.write_bytes(path, save({"features": features.contiguous()},
                                  metadata={"examples": str(len(x)), "format": CACHE_FORMAT}))
    return features, False


class HeadOnFeatures(nn.Module):
    """The head of ``model`` reading cached features a[L-1]; it saves and loads as the whole
    model, so the trainer's checkpoints are ordinary run-folder weights."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.head(features)  # logits z: (B, num_classes)

    def state_dict(self, *args, **kwargs):
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.model.load_state_dict(state_dict, strict=strict, assign=assign)


# -- fine-tuning a run or a weight file --------------------------------------------------------

def head_prefix(model: nn.Module) -> str:
    """The state_dict prefix of the head: ``head.``, ``fc.`` or ``classifier.6.``."""
    return next(f"{name}." for name, m in model.named_modules() if m is model.head)


def source_weights(source: str | Path, model_name: str | None) -> tuple[Path, dict | None]:
    """(weights file, the source run's config or None) of RUN_OR_WEIGHTS."""
    from deepnotes.train.run import read_config

    path = Path(source)
    if path.is_dir():
        config = read_config(path)
        if model_name and model_name != config["model"]:
            raise DeepnotesError(f"--model {model_name}: {path} trains {config['model']}; "
                                 "fine-tuning keeps the pre-trained architecture")
        if config["kind"] not in ("image", "table"):
            raise DeepnotesError(f"{path}: a run on {config['kind']} data; finetune takes image "
                                 "and table classifiers")
        return path / "model.safetensors", config
    if not path.exists():
        raise DeepnotesError(f"{path}: no such run folder or weights file")
    if not model_name:
        raise DeepnotesError(f"{path}: a weights file; say which network it holds with --model")
    return path, None


def load_body(model: nn.Module, path: Path, label: str, from_run: bool = False) -> None:
    """Load every weight of ``path`` (a run's: its committed weights) but the head into ``model``
    (B's head stays new); another architecture is refused with the first mismatched key and its
    shapes."""
    from deepnotes.models.weights import check_state_dict, drop_optional, read_state_dict

    prefix, own = head_prefix(model), model.state_dict()
    if from_run:
        weights = committed_weights(path.parent)  # checked finite on the way
    else:
        weights = read_state_dict(path)
        check_finite(weights, str(path))
    state = {k: v for k, v in drop_optional(model, weights).items()
             if not k.startswith(prefix)}
    state.update({k: v for k, v in own.items() if k.startswith(prefix)})
    check_state_dict(model, state, label)
    model.load_state_dict(state, strict=False)  # checked: at most num_batches_tracked lacks


def prepare_finetune(source: str | Path, config: dict, *, freeze_option="auto",
                     gradual: bool = False, lr_decay: float | None = None,
                     progress: bool = True) -> tuple[dict, str]:
    """A training session on B (see :func:`deepnotes.train.session.prepare`) whose model has the
    source's weights below a new head, with groups frozen and the optimizer over the rest.
    Returns (session, a line saying what was frozen and why)."""
    from deepnotes.optim import create_optimizer
    from deepnotes.train.session import prepare

    path, source_config = source_weights(source, config.get("model"))
    config["model"] = source_config["model"] if source_config else config["model"]
    session = prepare(config, progress=progress, fresh=True)
    dataset, model = session["dataset"], session["model"]
    if source_config:
        if (dataset.kind, dataset.in_channels) != (source_config["kind"],
                                                   source_config["in_channels"]):
            raise DeepnotesError(
                f"--data {config['data']}: {dataset.kind} data with {dataset.in_channels} "
                f"channels or features; {source} was trained on {source_config['kind']} data with "
                f"{source_config['in_channels']} (transfer needs the same input x)")
        config["normalize"] = source_config["normalize"]  # the input the pre-trained layers know
    load_body(model, path, f"{path} (for --model {config['model']})",
              from_run=source_config is not None)
    groups = layer_groups(model)
    per_class = len(session["splits"].train) / dataset.num_classes
    n = parse_freeze(freeze_option, len(groups), per_class)
    check_freeze(n, groups)
    freeze(model, n)
    decay = lr_decay if lr_decay is not None else (2.6 if gradual else 1.0)
    if not decay >= 1:
        raise DeepnotesError(f"--lr-decay {lr_decay}: expected a number >= 1 (earlier layers "
                             "learn more slowly)")
    if gradual:
        for _, modules in groups[n:]:
            _set_frozen(modules, True)  # thawed one an epoch, top first, by fit_finetune
    session["optimizer"] = create_optimizer(
        config["optimizer"], optimizer_groups(model, config["lr"], decay, n), config["lr"],
        beta=config.get("beta"), weight_decay=config.get("weight_decay", 0.0))
    config["transfer"] = {"source": str(source), "source_model": config["model"],
                          "source_classes": source_config["classes"] if source_config else None,
                          "layer_groups": [name for name, _ in groups], "freeze": n,
                          "freeze_option": str(freeze_option), "per_class": per_class,
                          "gradual": gradual, "lr_decay": decay}
    names = ", ".join(name for name, _ in groups[:n]) or "none"
    line = (explain_auto(per_class, len(groups)) if str(freeze_option) == "auto"
            else f"--freeze {freeze_option}: freezing {n} of {len(groups)} layer groups")
    return session, f"{line}; frozen: {names}"


def fit_finetune(session: dict, run_dir: Path, *, cache: bool = True,
                 cache_dir: str | Path | None = None, progress: bool = True, on_checkpoint=None):
    """Train the session into ``run_dir``; return (trainer, metrics). With every group frozen
    (and no augmentation), the head is trained on cached features. ``on_checkpoint()`` is
    called after each checkpoint is committed."""
    from deepnotes.train.session import fit

    config, model = session["config"], session["model"]
    transfer = config["transfer"]
    head_only = transfer["freeze"] == len(transfer["layer_groups"])
    transfer["feature_cache"] = bool(cache and head_only and not config.get("augment"))
    if transfer["feature_cache"]:
        return fit_head_on_cache(session, run_dir, Path(cache_dir or run_dir.parent /
                                                        ".feature-cache"), progress=progress,
                                 on_checkpoint=on_checkpoint)
    on_epoch = None
    if transfer["gradual"]:
        def on_epoch(row):
            name = unfreeze_next(model, transfer["freeze"])
            if name:
                log.info("gradual unfreezing: %s trains from epoch %d on", name, row["epoch"] + 1)
    return fit(session, run_dir, progress=progress, on_epoch=on_epoch, on_checkpoint=on_checkpoint)


def fit_head_on_cache(session: dict, run_dir: Path, cache_dir: Path, progress: bool = True,
                      on_checkpoint=None):
    """Train only the head, on features a[L-1] computed once and cached on disk; then write the
    run folder as ``fit`` does (metrics are computed through the whole network)."""
    from deepnotes.data import Batches, Normalizer
    from deepnotes.train import Trainer, plots
    from deepnotes.train.run import provenance, split_metrics, write_json

    config, dataset, splits, device = (session[k] for k in ("config", "dataset", "splits",
                                                              "device"))
    model = session["model"].to(device)
    config.update(MARKER, provenance=provenance())
    write_json(run_dir / "config.json", config)
    features = {}
    for name in ("train", "dev"):
        idx = getattr(splits, name)
        features[name], hit = cached_features(model, dataset.x[idx], config["normalize"],
                                              cache_dir, device)
        log.info("%s features of %d %s examples %s %s", "read" if hit else "computed",
                 len(idx), name, "from" if hit else "and saved to", cache_dir)
    same = Normalizer([], [], 1.0)  # the features are used as they are
    train = Batches(features["train"], dataset.y[splits.train], torch.arange(len(splits.train)),
                    config["batch_size"], same, shuffle=True, drop_last=True, seed=config["seed"],
                    device=device)  # the same order as the uncached batches
    dev = Batches(features["dev"], dataset.y[splits.dev], torch.arange(len(splits.dev)),
                  max(512, config["batch_size"]), same, device=device)
    trainer = Trainer(HeadOnFeatures(model), session["optimizer"], epochs=config["epochs"],
                      schedule=config["schedule"], device=device, run_dir=run_dir,
                      progress=progress, bf16=config["bf16"], on_checkpoint=on_checkpoint)
    log.info("training the head of %s on cached features of %s (%s) on %s; run folder %s",
             config["model"], config["data"], splits.sizes(), device, run_dir)
    trainer.fit(train, dev)
    dataset.x, dataset.y = dataset.x.to(device), dataset.y.to(device)
    result = split_metrics(model, config, dataset, splits, device)
    write_json(run_dir / "metrics.json", result)
    plots.learning_curves(trainer.history, run_dir / "learning_curves.png")
    plots.confusion_matrix(result["test"]["confusion_matrix"], config["classes"],
                           run_dir / "confusion_matrix.png")
    return trainer, result
