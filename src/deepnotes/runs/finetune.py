"""``deepnotes finetune``: a run or a weight file trained on task A, fine-tuned on task B.

:func:`prepare_finetune` builds a training session on B whose model has the source's weights
below a new head, freezes layer groups by the rule of :mod:`deepnotes.transfer`, and gives the
optimizer the rest (with discriminative learning rates); :func:`fit_finetune` trains it, on
cached features (:mod:`deepnotes.feature_cache`) when only the head learns, else through the
whole network (with gradual unfreezing when asked).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from deepnotes.data import Batches, Normalizer
from deepnotes.errors import DeepnotesError, check_range
from deepnotes.feature_cache import HeadOnFeatures, cached_features
from deepnotes.models.network import Network
from deepnotes.models.weights import drop_optional, load_checked, read_state_dict
from deepnotes.optim import create_optimizer
from deepnotes.runs.config import RunConfig, read_config
from deepnotes.runs.session import Session, finish, fit, marking_stops, prepare, start_folder
from deepnotes.train import Trainer
from deepnotes.train.checkpoint import check_finite, committed_weights
from deepnotes.transfer import (
    check_freeze,
    explain_auto,
    freeze,
    layer_groups,
    optimizer_groups,
    parse_freeze,
    set_frozen,
    unfreeze_next,
)

log = logging.getLogger("deepnotes.transfer")


def source_weights(source: str | Path,
                   model_name: str | None) -> tuple[Path, RunConfig | None]:
    """(weights file, the source run's config or None) of RUN_OR_WEIGHTS."""
    path = Path(source)
    if path.is_dir():
        config = read_config(path)
        if model_name and model_name != config.model:
            raise DeepnotesError(f"--model {model_name}: {path} trains {config.model}; "
                                 "fine-tuning keeps the pre-trained architecture")
        if config.kind not in ("image", "table"):
            raise DeepnotesError(f"{path}: a run on {config.kind} data; finetune takes image "
                                 "and table classifiers")
        return path / "model.safetensors", config
    if not path.exists():
        raise DeepnotesError(f"{path}: no such run folder or weights file")
    if not model_name:
        raise DeepnotesError(f"{path}: a weights file; say which network it holds with --model")
    return path, None


def load_body(model: Network, path: Path, label: str, from_run: bool = False) -> None:
    """Load every weight of ``path`` (a run's: its committed weights) but the head into ``model``
    (B's head stays new); another architecture is refused with the first mismatched key and its
    shapes."""
    prefix, own = model.head_prefix(), model.state_dict()
    if from_run:
        weights = committed_weights(path.parent)  # checked finite on the way
    else:
        weights = read_state_dict(path)
        check_finite(weights, str(path))
    state = {k: v for k, v in drop_optional(model, weights).items()
             if not k.startswith(prefix)}
    state.update({k: v for k, v in own.items() if k.startswith(prefix)})
    load_checked(model, state, label)


def prepare_finetune(source: str | Path, config: RunConfig, *, freeze_option="auto",
                     gradual: bool = False, lr_decay: float | None = None,
                     progress: bool = True) -> tuple[Session, str]:
    """A training session on B (see :func:`deepnotes.runs.session.prepare`) whose model has the
    source's weights below a new head, with groups frozen and the optimizer over the rest.
    Returns (session, a line saying what was frozen and why)."""
    path, source_config = source_weights(source, config.model)
    config.model = source_config.model if source_config else config.model
    session = prepare(config, progress=progress, fresh=True)
    dataset, model = session.dataset, session.model
    if source_config:
        if (dataset.kind, dataset.in_channels) != (source_config.kind,
                                                   source_config.in_channels):
            raise DeepnotesError(
                f"--data {config.data}: {dataset.kind} data with {dataset.in_channels} "
                f"channels or features; {source} was trained on {source_config.kind} data with "
                f"{source_config.in_channels} (transfer needs the same input x)")
        config.normalize = source_config.normalize  # the input the pre-trained layers know
    load_body(model, path, f"{path} (for --model {config.model})",
              from_run=source_config is not None)
    groups = layer_groups(model)
    per_class = len(session.splits.train) / dataset.num_classes
    n = parse_freeze(freeze_option, len(groups), per_class)
    check_freeze(n, groups)
    freeze(model, n)
    decay = lr_decay if lr_decay is not None else (2.6 if gradual else 1.0)
    check_range("--lr-decay", decay, 1, hint="earlier layers learn more slowly")
    if gradual:
        for _, modules in groups[n:]:
            set_frozen(modules, True)  # thawed one an epoch, top first, by fit_finetune
    lr = session.optimizer.defaults["lr"]  # --lr, or the rule's default alpha
    session.optimizer = create_optimizer(
        config.optimizer, optimizer_groups(model, lr, decay, n), lr,
        beta=config.beta, weight_decay=config.weight_decay)
    config.transfer = {"source": str(source), "source_model": config.model,
                       "source_classes": source_config.classes if source_config else None,
                       "layer_groups": [name for name, _ in groups], "freeze": n,
                       "freeze_option": str(freeze_option), "per_class": per_class,
                       "gradual": gradual, "lr_decay": decay}
    names = ", ".join(name for name, _ in groups[:n]) or "none"
    line = (explain_auto(per_class, len(groups)) if str(freeze_option) == "auto"
            else f"--freeze {freeze_option}: freezing {n} of {len(groups)} layer groups")
    return session, f"{line}; frozen: {names}"


def fit_finetune(session: Session, run_dir: Path, *, cache: bool = True,
                 cache_dir: str | Path | None = None, progress: bool = True, on_checkpoint=None):
    """Train the session into ``run_dir``; return (trainer, metrics). With every group frozen
    (and no augmentation), the head is trained on cached features. ``on_checkpoint()`` is
    called after each checkpoint is committed."""
    config, model = session.config, session.model
    transfer = config.transfer or {}  # prepare_finetune set it
    head_only = transfer["freeze"] == len(transfer["layer_groups"])
    transfer["feature_cache"] = bool(cache and head_only and not config.augment)
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


def fit_head_on_cache(session: Session, run_dir: Path, cache_dir: Path, progress: bool = True,
                      on_checkpoint=None):
    """Train only the head, on features a[L-1] computed once and cached on disk; then write the
    run folder as ``fit`` does (metrics are computed through the whole network)."""
    config, dataset, splits, device = (session.config, session.dataset, session.splits,
                                       session.device)
    model = session.model.to(device)
    start_folder(session, run_dir)
    features = {}
    for name in ("train", "dev"):
        idx = getattr(splits, name)
        features[name], hit = cached_features(model, dataset.x, config.normalize, cache_dir,
                                              device, indices=idx)  # read a block at a time
        log.info("%s features of %d %s examples %s %s", "read" if hit else "computed",
                 len(idx), name, "from" if hit else "and saved to", cache_dir)
    same = Normalizer([], [], 1.0)  # the features are used as they are
    train = Batches(features["train"], dataset.y[splits.train], torch.arange(len(splits.train)),
                    config.mini_batch, same, shuffle=True, drop_last=True, seed=config.seed,
                    device=device)  # the same order as the uncached batches
    dev = Batches(features["dev"], dataset.y[splits.dev], torch.arange(len(splits.dev)),
                  max(512, config.mini_batch), same, device=device)
    trainer = Trainer(HeadOnFeatures(model), session.optimizer, epochs=config.epochs,
                      schedule=config.schedule, device=device, run_dir=run_dir,
                      progress=progress, precision=config.amp_precision,
                      on_checkpoint=on_checkpoint, task=config.task)
    log.info("training the head of %s on cached features of %s (%s) on %s; run folder %s",
             config.model, config.data, splits.sizes(), device, run_dir)
    with marking_stops(run_dir):
        trainer.fit(train, dev)  # leaves the best epoch's head in the model
    dataset.to(device)
    return trainer, finish(session, model, trainer.history, run_dir, trainer.state)
