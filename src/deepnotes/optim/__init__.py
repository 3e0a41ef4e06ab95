"""Optimisers by name: gradient descent, momentum, RMSprop, Adam; and learning-rate schedules.

``create_optimizer("adam", model.parameters(), lr=3e-3)``. The notes' defaults: momentum
beta = 0.9; Adam beta1 = 0.9, beta2 = 0.999, eps = 1e-8. The learning rate alpha must be tuned.
"""

from __future__ import annotations

import torch

from deepnotes.errors import DeepnotesError, unknown_name
from deepnotes.optim.schedules import SCHEDULES, check_schedule, lambda_lr, learning_rate


def _fast(cls, params, **options) -> torch.optim.Optimizer:
    """torch's fused kernel (one kernel updates each tensor) where this torch has one for the
    optimiser, else the multi-tensor path: the same update rule with less Python per step."""
    params = list(params)
    try:
        return cls(params, fused=True, **options)
    except (RuntimeError, TypeError, ValueError):
        return cls(params, foreach=True, **options)


OPTIMIZERS = {
    "sgd": lambda params, lr: _fast(torch.optim.SGD, params, lr=lr),
    "momentum": lambda params, lr: _fast(torch.optim.SGD, params, lr=lr, momentum=0.9),
    "rmsprop": lambda params, lr: _fast(torch.optim.RMSprop, params, lr=lr, alpha=0.999,
                                        eps=1e-8),
    "adam": lambda params, lr: _fast(torch.optim.Adam, params, lr=lr, betas=(0.9, 0.999),
                                     eps=1e-8),
}

__all__ = ["OPTIMIZERS", "SCHEDULES", "check_lr", "create_optimizer", "learning_rate", "check_schedule", "lambda_lr",
           "list_optimizers"]


def list_optimizers() -> list[str]:
    return sorted(OPTIMIZERS)


def create_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    """An optimiser by name with learning rate ``lr`` (alpha > 0)."""
    if name not in OPTIMIZERS:
        raise DeepnotesError(unknown_name("optimizer", name, list_optimizers()))
    check_lr(lr)
    return OPTIMIZERS[name](params, lr)


def check_lr(lr: float) -> None:
    """alpha must be a positive, finite number."""
    if not 0 < lr < float("inf"):
        raise DeepnotesError(f"--lr {lr}: the learning rate must be > 0 and finite")
