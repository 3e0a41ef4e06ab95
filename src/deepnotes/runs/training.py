"""``deepnotes train``'s two jobs: start a run in a new folder, or continue one from its last
checkpoint. Under torchrun rank 0 names, makes, locks and repairs the folder and the other ranks
are told; every rank trains. A run that stops on a NaN loss or an interrupt says so in
``stopped.json`` (:data:`~deepnotes.runs.session.STOPPED`, written by ``fit``), which is removed
when the run trains on."""

from __future__ import annotations

import logging
from pathlib import Path

from deepnotes.device import resolve_device
from deepnotes.errors import DeepnotesError
from deepnotes.runs import folder
from deepnotes.runs.config import RunConfig, read_config
from deepnotes.runs.session import STOPPED, Session, fit, prepare
from deepnotes.train import distributed
from deepnotes.train.checkpoint import committed_state
from deepnotes.train.recipes import recipe_options

log = logging.getLogger("deepnotes.train")

__all__ = ["STOPPED", "apply_changes", "resume", "start"]


def start(options: dict, out: str | Path, name: str | None, overwrite: bool,
          progress: bool = True) -> tuple[Path, dict | None]:
    """Train a new run of ``options`` (RunConfig fields given on the command line; a recipe's
    defaults under them) into ``out/name`` (default MODEL-DATA, numbered if taken); return the
    run folder and the metrics (None on a rank other than 0)."""
    if name is not None:
        folder.check_name(name)  # before any work
    device = resolve_device(options.get("device", RunConfig.device))
    if options.get("bf16"):  # the older flag is an explicit --precision bf16, over a recipe's
        options = {"precision": "bf16", **options}
    config = RunConfig(**{**recipe_options(options.get("recipe"), device), **options})
    session = prepare(config, progress=progress, fresh=True)
    if not distributed.is_writer():  # rank 0 names, makes and locks the folder; the others are told
        run_dir = distributed.broadcast(None)
        return run_dir, fit(session, run_dir, progress=progress)[1]
    with folder.create(out, name, f"{config.model}-{config.data_name}", overwrite) as run:
        distributed.broadcast(run.path)
        return run.path, fit(session, run.path, progress=progress,
                             on_checkpoint=run.committed)[1]


def resume(run_dir: str | Path, options: dict, allow_changes: bool = False,
           progress: bool = True, more_epochs: int | None = None) -> dict | None:
    """Continue the run in ``run_dir`` from its last checkpoint; ``options`` given again must
    equal the run's unless ``allow_changes`` (the model never changes). ``more_epochs``: train
    a finished run that many epochs longer (:func:`deepnotes.runs.session.train_longer`).
    Returns the metrics (None on a rank other than 0)."""
    run_dir = Path(run_dir)
    if more_epochs is not None and more_epochs < 1:
        raise DeepnotesError(f"--more-epochs {more_epochs}: expected a count >= 1")
    if more_epochs is not None and "epochs" in options:
        raise DeepnotesError("--more-epochs and --epochs: give one (--more-epochs counts the "
                             "epochs after the run's last)")
    folder.check_continuable(run_dir)
    config = read_config(run_dir)
    if config.transfer:
        raise DeepnotesError(f"--resume {run_dir}: a run made by deepnotes finetune (its layers "
                             "are frozen in groups); run deepnotes finetune again")
    if options.get("class_weights") == "balanced" and isinstance(config.class_weights, list):
        options = {k: v for k, v in options.items() if k != "class_weights"}  # resolved then
    changed = apply_changes(config, options, run_dir, allow_changes)
    if not distributed.is_writer():  # rank 0 locks and repairs the folder
        return _continue(prepared(config, progress), run_dir, None, changed, progress,
                         more_epochs)
    with folder.open_to_continue(run_dir) as run:
        return _continue(prepared(config, progress), run_dir, run, changed, progress,
                         more_epochs)


def apply_changes(config: RunConfig, options: dict, run_dir: Path, allow: bool) -> bool:
    """Set the ``options`` that differ from the run's (refused without ``allow``); whether any
    did."""
    changed = {k: (getattr(config, k), v) for k, v in options.items() if getattr(config, k) != v}
    if "model" in changed:
        old, new = changed["model"]
        raise DeepnotesError(f"--resume {run_dir}: the run trains {old}, not {new}")
    if not changed:
        return False
    listed = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items())
    if not allow:
        raise DeepnotesError(f"--resume {run_dir}: options differ from the run's ({listed}); "
                             "drop them, or pass --allow-changes")
    log.warning("resuming with changed options: %s", listed)
    for key, value in options.items():
        setattr(config, key, value)
    return True


def prepared(config: RunConfig, progress: bool) -> Session:
    session = prepare(config, progress=progress, fresh=False)
    distributed.barrier()  # the folder is repaired before any rank reads it
    return session


def _continue(session: Session, run_dir: Path, run: folder.RunFolder | None, changed: bool,
              progress: bool, more_epochs: int | None = None) -> dict | None:
    """Train on from the last checkpoint (``run``: the locked folder, on rank 0)."""
    config, on_checkpoint = session.config, None
    if run is not None:
        committed = committed_state(run_dir)
        stale = committed is None or committed.epoch < config.epochs or bool(more_epochs)
        rewrite = changed or bool(more_epochs)

        def on_checkpoint():  # once a new checkpoint commits, the run is no longer the old one
            if stale:
                folder.forget_final_results(run)  # they will describe the new end
            if rewrite:  # the new options are the run's once a checkpoint has them
                config.write(run_dir / "config.json")
        (run_dir / STOPPED).unlink(missing_ok=True)  # it trains on: the old stop is history
    return fit(session, run_dir, progress=progress, resuming=True, more_epochs=more_epochs,
               on_checkpoint=on_checkpoint)[1]
