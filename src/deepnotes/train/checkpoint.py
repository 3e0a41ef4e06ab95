"""Checkpoints without pickle: tensors in safetensors, everything else in JSON.

``state.safetensors`` is the resume point and the commit record. It holds the model (``model.*``),
the best epoch's weights when they are not the model's (``best.*``), the optimizer state
(``optim.*``), the RNG state, and the trainer's counters and history as JSON in the file's
metadata, with the checkpoint's id (``epoch:step:global_step``). Its one atomic rename commits all
of it together: a kill at any moment leaves the previous checkpoint or the new one.

The other files are derived from it and written after it: ``model.safetensors`` (the kept
weights: the best epoch's, for evaluate / predict / transfer; the id in its metadata),
``state.json`` (the counters, for people; the id) and ``history.csv``. A kill between the commit
and these writes leaves them a checkpoint behind; :func:`repair` rewrites them from the committed
state, and :func:`committed_weights` reads the committed weights whatever the state of the
folder.

A checkpoint is only written if it is good: every weight finite. Weights read back are checked
the same way, so a NaN never reaches a prediction.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from deepnotes import atomic
from deepnotes.errors import DeepnotesError
from deepnotes.models.weights import load_checked
from deepnotes.train.history import history_text, write_history
from deepnotes.train.schema import check_state
from deepnotes.train.state import TrainState

STATE_KEY = "deepnotes_state"
ID_KEY = "deepnotes_checkpoint"  # model.safetensors: the id of the checkpoint it came from

log = logging.getLogger(__name__)


def save(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
         state: TrainState, best: dict[str, torch.Tensor] | None = None) -> None:
    """Commit the resume point (one rename), then write the files derived from it. ``best``:
    the best epoch's weights, when they are not the model's own."""
    weights = _plain(model.state_dict())
    check_finite(weights, "the model to save")  # a bad checkpoint is never committed
    state.checkpoint = checkpoint_id(state)
    tensors = {f"model.{k}": v for k, v in weights.items()}
    tensors.update({f"best.{k}": v for k, v in (best or {}).items()})
    optim_tensors, optim_json = _split_optimizer(optimizer.state_dict())
    tensors.update({f"optim.{k}": v for k, v in optim_tensors.items()})
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda{i}"] = s
    meta = {**state.to_dict(), "optimizer": optim_json}
    atomic.write_bytes(run_dir / "state.safetensors",
                       st_save(tensors, metadata={STATE_KEY: json.dumps(meta)}))
    _write_derived(run_dir, best or weights, state)


def _write_derived(run_dir: Path, weights: dict, state: TrainState) -> None:
    """model.safetensors, state.json and history.csv of the committed ``state``."""
    atomic.write_bytes(run_dir / "model.safetensors",
                       st_save(weights, metadata={ID_KEY: state.checkpoint or
                                                  checkpoint_id(state)}))
    atomic.write_text(run_dir / "state.json", json.dumps(state.to_dict(), indent=1) + "\n")
    write_history(run_dir / "history.csv", state.history)


def checkpoint_id(state: TrainState) -> str:
    """``epoch:step:global_step``: it only grows within a run folder."""
    return f"{state.epoch}:{state.step}:{state.global_step}"


def committed_state(run_dir: Path) -> TrainState | None:
    """The trainer state of the committed checkpoint (its metadata only), None without one."""
    path = run_dir / "state.safetensors"
    if not path.is_file():
        return None
    return TrainState.from_dict(_state_of(_metadata(path), path))


class CorruptCheckpoint(DeepnotesError):
    """A checkpoint file that cannot be read: truncated, overwritten, not safetensors."""


def committed_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The run's trained weights: ``model.safetensors``, or the committed checkpoint's weights
    when a kill left model.safetensors behind the checkpoint, or when it is corrupt
    (``--resume`` repairs the file). Where the checkpoint itself is corrupt, model.safetensors
    still gives the kept weights, with a warning; where both are, the error names the model's."""
    path, record = run_dir / "model.safetensors", run_dir / "state.safetensors"
    try:
        state = committed_state(run_dir)
    except DeepnotesError as exc:  # the commit record is damaged; the weights may not be
        if not path.is_file():
            raise
        weights = _read_finite(path)
        log.warning("%s; using %s, the kept weights (the run cannot be resumed from this "
                    "checkpoint)", exc, path)
        return weights
    try:
        if state is None or (path.is_file() and _metadata(path).get(ID_KEY) == state.checkpoint):
            return _read_finite(path)
        why = (f"{path} is behind the run's last checkpoint (it was interrupted while "
               "saving)")
    except CorruptCheckpoint as exc:
        if state is None:
            raise
        why = str(exc)
    log.warning("%s; using the checkpoint's weights; deepnotes train --resume %s repairs the "
                "folder", why, run_dir)
    weights = kept_weights(_read(record)[0])
    check_finite(weights, str(record))
    return weights


def kept_weights(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weights a checkpoint's run keeps: the best epoch's (``best.*``) when stored apart,
    else the model's (``model.*``)."""
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    return best or {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}


def repair(run_dir: Path) -> bool:
    """Make model.safetensors, state.json and history.csv agree with the committed checkpoint;
    return whether anything was rewritten."""
    state = committed_state(run_dir)
    if state is None:
        return False
    model_file = run_dir / "model.safetensors"
    try:
        readable = json.loads((run_dir / "state.json").read_text())
        want = state.checkpoint  # None in runs made before checkpoints had an id
        current = _metadata(model_file).get(ID_KEY) == want == readable.get("checkpoint")
    except (OSError, ValueError, DeepnotesError):
        current = False
    history = run_dir / "history.csv"
    rows = history_text(state.history)
    if current and history.is_file() and history.read_text() == rows:
        return False
    _write_derived(run_dir, kept_weights(_read(run_dir / "state.safetensors")[0]), state)
    log.warning("%s: rewrote model.safetensors, state.json and history.csv from the last "
                "checkpoint (the run was interrupted while saving it)", run_dir)
    return True


def _read_finite(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a damaged file is named as a corrupt checkpoint, a
    weight that is NaN or infinite by its name."""
    tensors = _read(path)[0]
    check_finite(tensors, str(path))
    return tensors


def check_finite(tensors: dict[str, torch.Tensor], where: str) -> None:
    """Refuse NaN and infinity, naming the first tensor that holds one."""
    name = first_non_finite(tensors)
    if name is not None:
        bad = int((~torch.isfinite(tensors[name])).sum())
        raise DeepnotesError(f"{where}: weight {name!r} holds {bad} NaN or infinite "
                             f"value{'s' if bad > 1 else ''}; the weights are unusable")


def first_non_finite(tensors: dict[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding NaN or infinity, or None."""
    return next((name for name, t in tensors.items()
                 if t.is_floating_point() and not bool(torch.isfinite(t).all())), None)


def load(run_dir: Path, model: torch.nn.Module,
         optimizer: torch.optim.Optimizer) -> tuple[TrainState, dict[str, torch.Tensor] | None]:
    """Restore model, optimizer and RNG from ``state.safetensors``; return the trainer's state
    and the best epoch's weights when they are stored apart from the model's."""
    path = run_dir / "state.safetensors"
    tensors, meta = _read(path)
    state = _state_of(meta, path, optimizer)
    model_sd = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    check_finite(model_sd, str(path))
    load_checked(model, model_sd, path)
    optim_tensors = {k[6:]: v for k, v in tensors.items() if k.startswith("optim.")}
    optimizer.load_state_dict(_join_optimizer(optim_tensors, state.pop("optimizer")))
    torch.set_rng_state(tensors["rng.cpu"])
    cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda")]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} or None
    if best is not None:
        check_finite(best, str(path))
    return TrainState.from_dict(state), best


def _read(path: Path) -> tuple[dict, dict]:
    if not path.is_file():
        raise DeepnotesError(f"{path}: no such checkpoint file")
    try:
        tensors = st_load(path.read_bytes())
    except (SafetensorError, ValueError, OSError) as exc:
        raise CorruptCheckpoint(f"corrupt checkpoint {path}: {str(exc).splitlines()[0]}") \
            from None
    return tensors, _metadata(path)


def _metadata(path: Path) -> dict:
    """A safetensors file's metadata, read from its header alone."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, ValueError, OSError) as exc:
        raise CorruptCheckpoint(f"corrupt checkpoint {path}: {str(exc).splitlines()[0]}") \
            from None


def _state_of(meta: dict, path: Path, optimizer: torch.optim.Optimizer | None = None) -> dict:
    """The trainer state in a checkpoint's metadata, checked field by field (and against the
    ``optimizer`` it is to be loaded into) by :func:`deepnotes.train.schema.check_state`."""
    if STATE_KEY not in meta:
        raise CorruptCheckpoint(f"corrupt checkpoint {path}: no trainer state")
    try:
        state = json.loads(meta[STATE_KEY])
    except (ValueError, RecursionError) as exc:
        raise CorruptCheckpoint(f"corrupt checkpoint {path}: trainer state is not JSON "
                                f"({exc})") from None
    check_state(state, path, optimizer)
    return state


def _plain(state_dict: dict) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies that share no storage, as safetensors requires."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}


def _split_optimizer(sd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """optimizer.state_dict() -> (tensors "state.<param>.<name>", the JSON-able rest)."""
    tensors, scalars = {}, {}
    for pid, entries in sd["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{pid}.{name}"] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars[f"{pid}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _join_optimizer(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    for key, value in rest["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": rest["param_groups"]}
