"""Checkpoints without pickle: tensors in safetensors, everything else in JSON.

``state.safetensors`` is the resume point. It holds the model (``model.*``), the optimizer state
(``optim.*``), the RNG state, and the trainer's counters as JSON in the file's metadata, so one
atomic rename commits all of it together: a kill at any moment leaves the previous checkpoint or
the new one. ``model.safetensors`` (the weights alone, for evaluate / predict / transfer) and
``state.json`` (the counters, for people) are written after it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from deepnotes import atomic
from deepnotes.errors import DeepnotesError
from deepnotes.models.weights import check_state_dict

STATE_KEY = "deepnotes_state"


def save(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
         state: dict) -> None:
    """Write the resume point, then the weights and the readable state."""
    tensors = {f"model.{k}": v for k, v in _plain(model.state_dict()).items()}
    optim_tensors, optim_json = _split_optimizer(optimizer.state_dict())
    tensors.update({f"optim.{k}": v for k, v in optim_tensors.items()})
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda{i}"] = s
    meta = {**state, "optimizer": optim_json}
    atomic.write_bytes(run_dir / "state.safetensors",
                       st_save(tensors, metadata={STATE_KEY: json.dumps(meta)}))
    save_weights(run_dir / "model.safetensors", model)
    atomic.write_text(run_dir / "state.json", json.dumps(state, indent=1) + "\n")


def save_weights(path: Path, model: torch.nn.Module) -> None:
    atomic.write_bytes(path, st_save(_plain(model.state_dict())))


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a damaged file is named as a corrupt checkpoint."""
    return _read(path)[0]


def load(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore model, optimizer and RNG from ``state.safetensors``; return the trainer's state."""
    tensors, meta = _read(run_dir / "state.safetensors")
    if STATE_KEY not in meta:
        path = run_dir / "state.safetensors"
        raise DeepnotesError(f"corrupt checkpoint {path}: no trainer state")
    state = json.loads(meta[STATE_KEY])
    model_sd = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    load_model_state(model, model_sd, run_dir / "state.safetensors")
    optim_tensors = {k[6:]: v for k, v in tensors.items() if k.startswith("optim.")}
    optimizer.load_state_dict(_join_optimizer(optim_tensors, state.pop("optimizer")))
    torch.set_rng_state(tensors["rng.cpu"])
    cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda")]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
    return state


def load_model_state(model: torch.nn.Module, state_dict: dict, path: Path) -> None:
    """load_state_dict with a one-line account of missing/unexpected keys and shape mismatches."""
    check_state_dict(model, state_dict, path)
    model.load_state_dict(state_dict, strict=False)  # checked: at most num_batches_tracked lacks


def _read(path: Path) -> tuple[dict, dict]:
    from safetensors import safe_open

    if not path.is_file():
        raise DeepnotesError(f"{path}: no such checkpoint file")
    try:
        tensors = st_load(path.read_bytes())
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, ValueError, OSError) as exc:
        raise DeepnotesError(f"corrupt checkpoint {path}: {str(exc).splitlines()[0]}") from None
    return tensors, meta


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
