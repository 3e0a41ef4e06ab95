"""Weight files: read a state_dict, check it against a model, load it.

The notes' advice, "use open-source implementations", needs their weights: our models keep
torchvision's state_dict keys and shapes, so a torchvision or timm file loads directly::

    model = create_model("resnet18", num_classes=1000, in_channels=3)
    load_weights(model, "resnet18-f37072fd.pth")

``.safetensors`` files hold tensors only. ``.pth`` / ``.pt`` files are pickles: they are read with
``torch.load(weights_only=True)``, which unpickles tensors and plain containers and refuses
anything else, because unpickling an arbitrary object can run code. A checkpoint dict that wraps
the weights under ``"state_dict"`` or ``"model"`` is unwrapped, and a ``"module."`` prefix on every
key (a model saved from DistributedDataParallel) is removed.

Before loading, :func:`check_state_dict` compares keys and shapes and names the first mismatches
in one line. Two kinds of key are forgiven: a missing ``num_batches_tracked`` (files from before
torch 0.4.1 lack it; it only counts batches), and keys under a prefix the model lists in its
``optional_weights`` class attribute when the model has none of them (torchvision's GoogLeNet
file carries the auxiliary classifiers ``aux1.*``, ``aux2.*``, which ``aux_logits=False`` omits).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch
from torch import nn

from deepnotes.errors import DeepnotesError
from deepnotes.nn import cells

PICKLE_SUFFIXES = (".pth", ".pt")


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a .safetensors or .pth weights file into ``model`` after checking keys and shapes."""
    path = Path(path)
    return load_checked(model, drop_optional(model, read_state_dict(path)), path)


def load_checked(model: nn.Module, state_dict: dict, source: object) -> nn.Module:
    """``state_dict`` into ``model`` once :func:`check_state_dict` passes; a missing
    ``num_batches_tracked`` keeps the model's own value (the one key that may lack). Recurrent
    cells saved with the notes' W_g, b_g keys (deepnotes before 2026-12) are read as such."""
    state_dict = cells.upgrade(model, state_dict)  # recurrent weights saved in the older layout
    check_state_dict(model, state_dict, source)
    model.load_state_dict(state_dict, strict=False)  # checked: at most num_batches_tracked lacks
    return model


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, unwrapped from a checkpoint dict if need be."""
    path = Path(path)
    if not path.is_file():
        raise DeepnotesError(f"{path}: no such weights file")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        obj = _read_safetensors(path)
    elif suffix in PICKLE_SUFFIXES:
        obj = _read_pickle(path)
    else:
        raise DeepnotesError(f"{path}: unknown weights format {suffix!r}; expected .safetensors, "
                             f"{' or '.join(PICKLE_SUFFIXES)}")
    return _unwrap(obj, path)


def check_state_dict(model: nn.Module, state_dict: dict, source: object) -> None:
    """Raise a one-line DeepnotesError naming missing/unexpected keys or a shape mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in own]
    if missing or unexpected:
        raise DeepnotesError(
            f"{source}: weights of another architecture: {len(missing)} missing keys "
            f"{missing[:3]}, {len(unexpected)} unexpected keys {unexpected[:3]}"
        )
    wrong = [k for k, v in own.items() if k in state_dict and v.shape != state_dict[k].shape]
    if wrong:
        k = wrong[0]
        more = f" (and {len(wrong) - 1} more keys)" if len(wrong) > 1 else ""
        raise DeepnotesError(
            f"{source}: weights of another architecture: {k} has shape "
            f"{tuple(state_dict[k].shape)}, the model expects {tuple(own[k].shape)}{more}"
        )


def drop_optional(model: nn.Module, state_dict: dict) -> dict:
    """Drop keys under the model's ``optional_weights`` prefixes that the model does not have."""
    own = model.state_dict()
    drop = [p for p in getattr(model, "optional_weights", ())
            if not any(k.startswith(p) for k in own)]
    return {k: v for k, v in state_dict.items() if not k.startswith(tuple(drop))}


def _read_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, ValueError, OSError) as exc:
        raise DeepnotesError(f"corrupt weights file {path}: {_first_line(exc)}") from None


def _read_pickle(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise DeepnotesError(f"corrupt weights file {path}: {_first_line(exc)}") from None
    except Exception as exc:  # the weights-only unpickler's UnpicklingError
        if "weights only load failed" not in str(exc).lower():
            raise
        raise DeepnotesError(_refusal(path, str(exc))) from None


def _refusal(path: Path, message: str) -> str:
    """One line for a pickle that ``weights_only=True`` would not unpickle. torch's message
    names the blocked global ("Unsupported global: GLOBAL x.y" up to torch 2.5, "Trying to load
    unsupported GLOBAL x.y whose module x is blocked" later) and advises ``weights_only=False``,
    which is exactly what must not be done with a file from elsewhere: that advice is dropped."""
    found = re.search(r"unsupported (?:global: )?GLOBAL (\S+)", message, re.IGNORECASE)
    if found:
        return (f"{path}: refused: it holds a pickled {found.group(1)}, not only tensors, and "
                "unpickling it could run code (nothing was loaded); save model.state_dict() "
                "or use .safetensors")
    found = re.search(r"Unsupported operand \d+", message)
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    advice = ("weights only load failed", "weights_only", "check the documentation")
    detail = found.group(0) if found else next(
        (line for line in lines if not any(a in line.lower() for a in advice)), "?")
    return (f"corrupt weights file {path}, or a pickle beyond tensors (refused: unpickling it "
            f"could run code): {detail}")


def _unwrap(obj, path: Path) -> dict[str, torch.Tensor]:
    """{"state_dict": sd} or {"model": sd} -> sd; strip a "module." prefix on every key."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise DeepnotesError(f"{path}: expected a state_dict (a dict of tensors), got "
                             f"{type(obj).__name__}" + (" (empty)" if obj == {} else ""))
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise DeepnotesError(f"{path}: expected a state_dict of tensors; {len(bad)} entries are "
                             f"not tensors, e.g. {bad[:3]}")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def hash_tensor(digest, name: str, tensor: torch.Tensor) -> None:
    """Feed a tensor's name, shape, dtype and bytes to a hashlib ``digest``."""
    tensor = tensor.detach().to("cpu").contiguous()
    digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
    digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())


def fingerprint(state_dict: dict) -> str:
    """SHA-256 of a state dict's names, shapes, dtypes and values: equal weights, equal hash."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        hash_tensor(digest, key, state_dict[key])
    return digest.hexdigest()
