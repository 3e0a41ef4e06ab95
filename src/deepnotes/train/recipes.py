"""Recipes: named sets of training options, ``deepnotes train --recipe NAME``.

A recipe fills in the options the command line leaves out; an option given explicitly wins.
The run's config.json records the options the recipe chose, so ``--resume``, ``evaluate`` and
``predict`` need no recipe.

``fast``: small images in as little time as the hardware allows, after the CIFAR-10 speedruns
(airbench): the wide, shallow ``fastnet``; the data resident on the device as uint8, augmented
there (random shifts and mirror images) and averaged over the mirror image at test time; large
batches; Adam with the one-cycle schedule; bfloat16 autocast on GPUs and on CPUs that compute it
natively; NHWC tensors. It is meant for clothes-like images (Fashion-MNIST), where a mirror image
keeps the class; for digits or text pass ``--augment crop``, which also turns off the mirror at
test time.
"""

from __future__ import annotations

import torch

from deepnotes.device import cpu_has_bf16
from deepnotes.errors import DeepnotesError, unknown_name

RECIPES = {
    "fast": {"model": "fastnet", "augment": "crop,flip", "batch_size": 512, "optimizer": "adam",
             "lr": 4e-3, "schedule": "onecycle:0.2", "weight_decay": 5e-5, "epochs": 10,
             "channels_last": True},
}


def list_recipes() -> list[str]:
    return sorted(RECIPES)


def recipe_options(name: str | None, device: torch.device) -> dict:
    """The config values of recipe ``name`` on ``device`` ({} for None)."""
    if name is None:
        return {}
    if name not in RECIPES:
        raise DeepnotesError(unknown_name("recipe", name, list_recipes()))
    options = dict(RECIPES[name])
    if name == "fast":
        options["precision"] = "bf16" if _has_bf16(device) else "32"
    return options


def _has_bf16(device: torch.device) -> bool:
    """bfloat16 pays where the hardware computes it: CUDA GPUs that support it, CPUs with
    AVX512-BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_bf16()
