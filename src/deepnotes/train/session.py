"""One training run from a config: prepare data, model and optimizer, then fit into a run folder.

``deepnotes train``, ``compare-optimizers`` and ``tune`` all go through these two functions, so a
run folder means the same thing whichever command wrote it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from deepnotes.errors import DeepnotesError
from deepnotes.train import distributed
from deepnotes.train.folder import MARKER

log = logging.getLogger("deepnotes.train")


def prepare(config: dict, progress: bool = True, fresh: bool = True) -> dict:
    """Load and check data, complete the config, build model and optimizer; no files written."""
    from deepnotes.data import Normalizer, augment
    from deepnotes.data.splits import data_warnings
    from deepnotes.device import resolve_device
    from deepnotes.optim import check_schedule, create_optimizer
    from deepnotes.train.run import (
        build_data,
        build_model,
        check_model_fits,
        default_model,
        precision_of,
    )
    from deepnotes.train.trainer import autocast_dtype, check_compiler

    device = distributed.setup(resolve_device(config["device"]))
    distributed.check_batch(config["batch_size"])
    autocast_dtype(precision_of(config), device)  # --precision 16 off CUDA fails here
    if config.get("compile"):
        check_compiler(device)
    check_schedule(config["schedule"])  # an unknown schedule fails here, early
    augment.parse(config.get("augment"))  # and so does an unknown augmentation
    dataset, splits = build_data(config, progress=progress)
    config["model"] = config["model"] or default_model(dataset)
    check_model_fits(config["model"], dataset)
    if config.get("augment") and dataset.kind != "image":
        raise DeepnotesError(f"--augment {config['augment']}: augmentation is for images, and "
                             f"--data {config['data']} holds {dataset.kind} data")
    if fresh:
        config.update(classes=dataset.classes, in_channels=dataset.in_channels,
                      input_shape=list(dataset.x.shape[1:]), kind=dataset.kind,
                      normalize=Normalizer.fit(dataset.x[splits.train]).to_dict(),
                      splits=splits.sizes())
    elif config["classes"] != dataset.classes:
        raise DeepnotesError(f"--resume: the data's classes changed since the run started "
                             f"({len(config['classes'])} then, {len(dataset.classes)} now)")
    for warning in data_warnings(dataset, splits):
        log.warning(warning)
    torch.manual_seed(config["seed"])
    model = build_model(config)
    optimizer = create_optimizer(config["optimizer"], model.parameters(), config["lr"],
                                 beta=config.get("beta"),
                                 weight_decay=config.get("weight_decay", 0.0))
    config["lr"] = optimizer.defaults["lr"]  # the rule's default alpha when none was given
    return {"config": config, "dataset": dataset, "splits": splits, "device": device,
            "model": model, "optimizer": optimizer}


def fit(session: dict, run_dir: Path, *, progress: bool = True, resuming: bool = False,
        on_epoch=None, on_checkpoint=None):
    """Train ``session``'s model into ``run_dir``; return (trainer, metrics of every split).

    Writes config.json (unless resuming; marked as a deepnotes run), the checkpoints and history,
    metrics.json and the two plots. ``on_epoch(row)`` is called after each epoch (``tune`` prunes
    from it), ``on_checkpoint()`` after each checkpoint is committed.
    """
    from deepnotes.train import Trainer, plots
    from deepnotes.train.run import (
        batches,
        precision_of,
        provenance,
        split_metrics,
        write_json,
    )

    config, dataset, splits, device = (session[k] for k in ("config", "dataset", "splits",
                                                              "device"))
    writer = distributed.is_writer()
    if not resuming and writer:
        config.update(MARKER, provenance=provenance())
        write_json(run_dir / "config.json", config)
        if dataset.vocab is not None:  # the ids a sequence model reads and writes
            write_json(run_dir / "vocab.json", {"input": dataset.vocab,
                                                "output": config["classes"]})
    trainer = Trainer(session["model"], session["optimizer"], epochs=config["epochs"],
                      schedule=config["schedule"], device=device, run_dir=run_dir,
                      progress=progress, on_epoch=on_epoch, on_checkpoint=on_checkpoint,
                      precision=precision_of(config),
                      channels_last=config["channels_last"], compile=config["compile"])
    if resuming:
        trainer.resume()
        if trainer.state["epoch"] >= config["epochs"]:
            log.info("%s finished all %d epochs already; recomputing its metrics", run_dir,
                     config["epochs"])
        else:
            log.info("resuming %s at epoch %d, step %d", run_dir, trainer.state["epoch"] + 1,
                     trainer.state["step"])
    dataset.x, dataset.y = dataset.x.to(device), dataset.y.to(device)  # once, for every split
    train_batches = batches(config, dataset, splits.train, device, train=True,
                            shard=distributed.shard())
    dev_batches = batches(config, dataset, splits.dev, device)
    log.info("training %s on %s (%s) with %s on %s; run folder %s", config["model"],
             config["data"], splits.sizes(), config["optimizer"], device, run_dir)
    trainer.fit(train_batches, dev_batches)
    if not writer:  # rank 0 evaluates and writes; the others are done
        return trainer, None
    result = split_metrics(trainer.model, config, dataset, splits, device)
    write_json(run_dir / "metrics.json", result)
    plots.learning_curves(trainer.history, run_dir / "learning_curves.png")
    draw = plots.task_matrices if config.get("targets") else plots.confusion_matrix
    draw(result["test"]["confusion_matrix"], config["classes"], run_dir / "confusion_matrix.png")
    return trainer, result
