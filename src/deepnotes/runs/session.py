"""One training run from a config: prepare data, model and optimizer, then fit into a run folder.

``deepnotes train``, ``finetune``, ``compare-optimizers`` and ``tune`` all go through
:func:`prepare` and :func:`fit`, so a run folder means the same thing whichever command wrote it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from deepnotes import atomic
from deepnotes.data import Dataset, Normalizer, augment, tables
from deepnotes.data.splits import Splits, data_warnings
from deepnotes.device import available_memory, resolve_device
from deepnotes.errors import DeepnotesError, LossDiverged
from deepnotes.models import Network
from deepnotes.optim import check_schedule, create_optimizer
from deepnotes.runs import report, tensorboard
from deepnotes.runs.build import DEFAULT_MODELS, batches, build_data, build_model, check_model_fits
from deepnotes.runs.config import FORMAT, FORMAT_VERSION, RunConfig, write_json
from deepnotes.runs.folder import provenance
from deepnotes.train import Trainer, TrainingInterrupted, distributed
from deepnotes.train.precision import autocast_dtype, check_compiler, check_cuda_graphs
from deepnotes.train.state import TrainState
from deepnotes.train.tasks import CLASSIFIED, PER, balanced_weights

log = logging.getLogger("deepnotes.train")

# {"reason": "diverged" | "interrupted" | "pruned" (a tune trial), "message": the error's line}
STOPPED = "stopped.json"
BATCH_SIZE = 64  # the mini-batch size of a run that names none, unless its data is small


@dataclass
class Session:
    """What a run trains: its config, data and splits, device, model and optimizer."""

    config: RunConfig
    dataset: Dataset
    splits: Splits
    device: torch.device
    model: Network
    optimizer: torch.optim.Optimizer

    def replace(self, **changes) -> Session:
        return dataclasses.replace(self, **changes)


def prepare(config: RunConfig, progress: bool = True, fresh: bool = True) -> Session:
    """Load and check data, complete the config (in place), build model and optimizer; no files
    written. ``fresh``: a new run (the data decides classes, shapes and normalisation), else a
    resumed one (the data must have the run's classes)."""
    device = distributed.setup(resolve_device(config.device))
    if config.batch_size is not None:
        distributed.check_batch(config.batch_size)
    autocast_dtype(config.amp_precision, device)  # --precision 16 off CUDA fails here
    if config.compile:
        check_compiler(device)
    if fresh:  # a resumed run (perhaps moved to a CPU) trains on without them where they can't
        check_cuda_graphs(config.cuda_graphs, config.compile, device, distributed.shard()[1])
    check_schedule(config.schedule)  # an unknown schedule fails here, early
    if config.tensorboard:
        tensorboard.writer_class()  # and so does --tensorboard without its package
    augment.parse(config.augment)  # and so does an unknown augmentation
    if config.multitask_loss not in PER:
        raise DeepnotesError(f"--multitask-loss {config.multitask_loss}: expected one of "
                             f"{', '.join(PER)}")
    if config.multitask_loss != "present" and not config.targets:
        raise DeepnotesError(f"--multitask-loss {config.multitask_loss}: applies to a multi-task "
                             "run, one with --targets")
    dataset, splits = build_data(config, progress=progress)
    config.model = config.model or DEFAULT_MODELS[dataset.kind]
    check_model_fits(config.model, dataset)
    if config.augment and dataset.kind != "image":
        raise DeepnotesError(f"--augment {config.augment}: augmentation is for images, and "
                             f"--data {config.data} holds {dataset.kind} data")
    if fresh:
        config.classes, config.in_channels = dataset.classes, dataset.in_channels
        config.input_shape, config.kind = list(dataset.x.shape[1:]), dataset.kind
        config.normalize = (Normalizer.fit_blocks(dataset.x, splits.train) if dataset.on_disk
                            else Normalizer.fit(dataset.x[splits.train])).to_dict()
        config.splits = splits.sizes()
        if dataset.kind == "table" and not config.targets and \
                Path(config.data).suffix.lower() == ".csv":  # predict reads new rows by name
            config.features, config.label_name = tables.columns(config.data, config.label_column)
        config.data_order = data_order(config.data_order, dataset)
        config.class_weights = class_weights(config.class_weights, dataset, splits, config.targets)
    elif config.classes != dataset.classes:
        raise DeepnotesError(f"--resume: the data's classes changed since the run started "
                             f"({len(config.classes)} then, {len(dataset.classes)} now)")
    if config.batch_size is None:
        config.batch_size = batch_size(len(splits.train), distributed.world_size())
    if config.early_stop and not len(splits.dev):
        raise DeepnotesError(f"--early-stop {config.early_stop}: needs a dev set to watch, and "
                             f"--data {config.data} has none with these fractions")
    for warning in data_warnings(dataset, splits):
        log.warning(warning)
    torch.manual_seed(config.seed)
    model = build_model(config)
    optimizer = create_optimizer(config.optimizer, model.parameters(), config.lr,
                                 beta=config.beta, weight_decay=config.weight_decay,
                                 **config.optimizer_variants())
    config.lr = optimizer.defaults["lr"]  # the rule's default alpha when none was given
    return Session(config, dataset, splits, device, model, optimizer)


def batch_size(m: int, processes: int = 1) -> int:
    """The mini-batch size of a run that names none: :data:`BATCH_SIZE`, or for a training set
    of m < 4 x 64 examples the largest power of two that makes at least 4 batches an epoch (8
    at the least), a multiple of the processes that share each batch. A 120-row table trains
    on 16 rows a step, 7 steps an epoch, rather than one step of 64 (the short last batch is
    dropped)."""
    size = BATCH_SIZE
    while size > 8 and m < 4 * size:
        size //= 2
    size = max(processes, size - size % processes)
    if size != BATCH_SIZE:
        log.info("batch size %d for %d training examples, %d steps an epoch (--batch-size "
                 "to choose another)", size, m, max(1, m // size))
    return size


def data_order(choice: str, dataset: Dataset) -> str:
    """--data-order auto, decided once by a fresh run (a resumed one keeps what it chose; a run
    from before the option is "auto" and random): quasi-random for a cache larger than the
    memory available now, else random."""
    if choice != "auto":
        return choice
    size = dataset.x.numel() * dataset.x.element_size()
    if not dataset.on_disk or size <= available_memory():
        return "random"
    log.info("the data (%.1f GB) is larger than the memory available: batches are drawn in "
             "quasi-random order", size / 1e9)
    return "quasi-random"


def class_weights(choice, dataset, splits, targets) -> list[float] | None:
    """--class-weights of a fresh run as numbers: ``balanced`` from the training split's class
    counts (:func:`deepnotes.train.tasks.balanced_weights`), or the weights given, one a
    class."""
    if choice is None:
        return None
    if targets or dataset.kind not in CLASSIFIED:
        raise DeepnotesError("--class-weights: weighs the classes of a run that gives each "
                             f"example one class, and --data holds {dataset.kind} data"
                             + (" with --targets" if targets else ""))
    k = dataset.num_classes
    if choice == "balanced":
        weights = balanced_weights(dataset.y[splits.train], k)
        log.info("class weights (balanced): %s", ", ".join(f"{c} {w:.3g}" for c, w in
                                                           zip(dataset.classes, weights)))
        return weights
    if len(choice) != k:
        given = ",".join(f"{w:g}" for w in choice)
        raise DeepnotesError(f"--class-weights {given}: {len(choice)} weights for {k} classes "
                             f"({', '.join(dataset.classes)})")
    return list(choice)


def start_folder(session: Session, run_dir: Path) -> None:
    """config.json (marked as a deepnotes run, with provenance) and, for sequence data, the
    vocabulary a model reads and writes."""
    config, dataset = session.config, session.dataset
    config.format, config.format_version = FORMAT, FORMAT_VERSION
    config.provenance = provenance()
    config.write(run_dir / "config.json")
    if dataset.vocab is not None:
        write_json(run_dir / "vocab.json", {"input": dataset.vocab, "output": config.classes})


def fit(session: Session, run_dir: Path, *, progress: bool = True, resuming: bool = False,
        more_epochs: int | None = None, on_epoch=None,
        on_checkpoint=None) -> tuple[Trainer, dict | None]:
    """Train ``session``'s model into ``run_dir``; return (trainer, metrics of every split; None
    on a rank other than 0).

    Writes config.json (unless resuming), the checkpoints and history, metrics.json and the two
    plots. ``more_epochs``: a resumed run that finished (or stopped early) trains that many more
    epochs, its schedule started over for them (``config.epochs`` grows to match).
    ``on_epoch(row)`` is called after each epoch (``tune`` prunes from it), ``on_checkpoint()``
    after each checkpoint is committed.
    """
    config, dataset, splits, device = (session.config, session.dataset, session.splits,
                                       session.device)
    if not resuming and distributed.is_writer():
        start_folder(session, run_dir)
    board = None
    if config.tensorboard and distributed.is_writer():
        board = tensorboard.EpochLog(run_dir, config, len(splits.train))
        on_epoch = _both(board, on_epoch)
    trainer = Trainer(session.model, session.optimizer, epochs=config.epochs,
                      schedule=config.schedule, device=device, run_dir=run_dir,
                      progress=progress, on_epoch=on_epoch, on_checkpoint=on_checkpoint,
                      precision=config.amp_precision, channels_last=config.channels_last,
                      compile=config.compile, task=config.task, monitor=config.monitor,
                      early_stop=config.early_stop, min_delta=config.min_delta,
                      classes=config.classes, cuda_graphs=config.cuda_graphs)
    if resuming:
        trainer.resume()
        if more_epochs:
            train_longer(trainer, config, more_epochs, run_dir)
        elif trainer.state.stopped:
            log.info("%s stopped already (%s); recomputing its metrics", run_dir,
                     trainer.state.stopped)
        elif trainer.state.epoch >= config.epochs:
            log.info("%s finished all %d epochs already; recomputing its metrics", run_dir,
                     config.epochs)
        else:
            log.info("resuming %s at epoch %d, step %d", run_dir, trainer.state.epoch + 1,
                     trainer.state.step)
    dataset.to(device)  # once, for every split
    train_batches = batches(config, dataset, splits.train, device, train=True,
                            shard=distributed.shard())
    dev_batches = batches(config, dataset, splits.dev, device)
    if not trainer.state.stopped and trainer.state.epoch < config.epochs:  # else: nothing to train
        log.info("training %s on %s (%s) with %s on %s; run folder %s", config.model,
                 config.data, splits.sizes(), config.optimizer, device, run_dir)
    with marking_stops(run_dir if distributed.is_writer() else None):
        trainer.fit(train_batches, dev_batches)  # leaves the best epoch's weights in the model
    if not distributed.is_writer():  # rank 0 evaluates and writes; the others are done
        return trainer, None
    result = finish(session, trainer.model, trainer.history, run_dir, trainer.state)
    if board is not None:
        board.close(result.get("best"))
    return trainer, result


@contextlib.contextmanager
def marking_stops(run_dir: Path | None):
    """Write :data:`STOPPED` into ``run_dir`` (None: write nothing) when training stops on a NaN
    loss or an interrupt, then let the error go on: train, finetune, compare and tune runs say
    why they stopped, and ``deepnotes runs`` shows it."""
    try:
        yield
    except (LossDiverged, TrainingInterrupted) as exc:
        if run_dir is not None:
            mark_stopped(run_dir, "diverged" if isinstance(exc, LossDiverged) else "interrupted",
                         str(exc))
        raise


def mark_stopped(run_dir: Path, reason: str, message: str) -> None:
    """:data:`STOPPED`: why the run in ``run_dir`` ended before its last epoch."""
    atomic.write_text(run_dir / STOPPED, json.dumps({"reason": reason, "message": message}) + "\n")


def train_longer(trainer: Trainer, config: RunConfig, more: int, run_dir: Path) -> None:
    """``more`` epochs after the last of a run that is done; its schedule starts over."""
    st = trainer.state
    if st.epoch < config.epochs and not st.stopped:
        raise DeepnotesError(f"--more-epochs {more}: {run_dir} has epochs left ({st.epoch} of "
                             f"{config.epochs} run); --resume it without --more-epochs first")
    trainer.extend(more)
    config.epochs = trainer.epochs
    log.info("%s: %d more epochs (%d to %d); the %s schedule starts over for them, from its "
             "first step (a warm restart)", run_dir, more, st.epoch + 1, config.epochs,
             config.schedule)


def _both(first, second):
    """An ``on_epoch`` that calls ``first`` then ``second`` (when there is one)."""
    def on_epoch(row: dict) -> None:
        first(row)
        if second is not None:
            second(row)
    return on_epoch


def finish(session: Session, model, history: list[dict], run_dir: Path,
           state: TrainState | None = None) -> dict:
    """The end of a run: metrics of every split through ``model`` (the kept epoch's) into
    metrics.json, with the monitored metric's best epoch and why the run stopped early (from
    the trainer's ``state``), the learning curves and the confusion matrix; returns the
    metrics."""
    result = report.split_metrics(model, session.config, session.dataset, session.splits,
                                  session.device)
    if state is not None and state.best_epoch is not None:
        result["best"] = {"monitor": state.monitor, "epoch": state.best_epoch,
                          "value": state.best_value, "stopped": state.stopped}
    report.write(run_dir, result, history, session.config)
    return result
