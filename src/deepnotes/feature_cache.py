"""The feature cache of transfer learning: a frozen network's features a[L-1], computed once.

When every layer group below the head is frozen, the network up to the head is a fixed function,
so its outputs for B's examples are computed once, saved to disk, and the softmax layer is trained
on them (the course's advice for a small B). A cache file is named by a hash of everything the
features depend on, so a stale cache is never read.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from deepnotes import atomic
from deepnotes.data import Normalizer
from deepnotes.models.network import Network
from deepnotes.models.weights import hash_tensor

log = logging.getLogger(__name__)

CACHE_FORMAT = "deepnotes-features-1"  # part of every cache key: a new format never reads old files


def feature_key(model: Network, x: torch.Tensor, normalize: dict,
                indices: torch.Tensor | None = None) -> str:
    """A hash of everything the features depend on: the architecture, every weight and buffer
    below the head, the normalisation, and the examples (``x[indices]``, read a block at a time:
    the same key as for that tensor whole). Any change gives another key, so a stale cache is
    never read."""
    h = hashlib.sha256(CACHE_FORMAT.encode())
    h.update(type(model).__qualname__.encode())
    h.update(repr(model.named_layers()).encode())  # the architecture below the head
    prefix = model.head_prefix()
    for name, t in model.state_dict().items():
        if not name.startswith(prefix):
            hash_tensor(h, name, t)
    h.update(json.dumps(normalize, sort_keys=True).encode())
    if indices is None:
        hash_tensor(h, "x", x)
    else:  # hash_tensor's header, then the bytes block by block
        h.update(f"x:{(len(indices), *x.shape[1:])}:{x.dtype};".encode())
        for block in _blocks(x, indices):
            h.update(block.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:32]


def _blocks(x: torch.Tensor, indices: torch.Tensor, size: int = 512):
    """x[indices] a block of ``size`` examples at a time, on the CPU (for examples mapped from
    disk: never all at once)."""
    for i in range(0, len(indices), size):
        yield x[indices[i:i + size].to(x.device)].cpu()


@torch.inference_mode()
def compute_features(model: Network, x: torch.Tensor, normalize: dict, device,
                     batch_size: int = 512, indices: torch.Tensor | None = None) -> torch.Tensor:
    """a[L-1] = model.features(x) for raw examples x (m, ...) (or ``x[indices]``, read a block
    at a time), in inference mode: (m, n_f)."""
    norm, was_training = Normalizer.from_dict(normalize), model.training
    model.eval()
    blocks = _blocks(x, torch.arange(len(x)) if indices is None else indices, batch_size)
    out = [model.features(norm(block.to(device))).float().cpu() for block in blocks]
    model.train(was_training)
    return torch.cat(out)


def cached_features(model: Network, x: torch.Tensor, normalize: dict, cache_dir: str | Path,
                    device="cpu", indices: torch.Tensor | None = None) -> tuple[torch.Tensor, bool]:
    """(features of x, or of ``x[indices]``, and whether they came from the cache); computed and
    saved on a miss."""
    path = Path(cache_dir) / f"{feature_key(model, x, normalize, indices)}.safetensors"
    m = len(x) if indices is None else len(indices)
    if path.is_file():
        try:
            features = load_file(str(path))["features"]
            if len(features) == m:
                return features, True
        except (SafetensorError, OSError, KeyError) as exc:
            log.warning("feature cache %s is unreadable (%s); computing again", path, exc)
    features = compute_features(model, x, normalize, device, indices=indices)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.sweep(path.parent)  # what killed writers left
    atomic.write_bytes(path, save({"features": features.contiguous()},
                                  metadata={"examples": str(m), "format": CACHE_FORMAT}))
    return features, False


class HeadOnFeatures(nn.Module):
    """The head of ``model`` reading cached features a[L-1]; it saves and loads as the whole
    model, so the trainer's checkpoints are ordinary run-folder weights."""

    def __init__(self, model: Network):
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.head(features)  # logits z: (B, num_classes)

    def state_dict(self, *args, **kwargs):
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.model.load_state_dict(state_dict, strict=strict, assign=assign)


