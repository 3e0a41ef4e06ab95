"""Optimisers by name: gradient descent, momentum, RMSprop, Adam; and learning-rate schedules.

``create_optimizer("adam", model.parameters(), lr=3e-3)``. The notes' defaults: momentum
beta = 0.9; Adam beta1 = 0.9, beta2 = 0.999, eps = 1e-8. The learning rate alpha must be tuned.
"""

from __future__ import annotations

import torch

from deepnotes.errors import DeepnotesError, unknown_name
from deepnotes.optim.schedules import SCHEDULES, check_schedule, lambda_lr, learning_rate


def _fast(cls, params, **options) -> torch.optim.Optimizer:
    params = list(params)
    try:
        return cls(params, fused=True, **options)
    except (RuntimeError, TypeError, ValueError):
        return cls(params, foreach=True, **options)


OPTIMIZERS = {  # replaced by the notes' own classes (being written)
    "sgd": lambda params, lr, **kw: _fast(torch.optim.SGD, params, lr=lr),
    "momentum": lambda params, lr, beta=0.9: _fast(torch.optim.SGD, params, lr=lr,
                                                   momentum=beta, dampening=beta),
    "rmsprop": lambda params, lr, beta=0.9: _fast(torch.optim.RMSprop, params, lr=lr, alpha=beta,
                                                  eps=1e-8),
    "adam": lambda params, lr, beta1=0.9, beta2=0.999: _fast(torch.optim.Adam, params, lr=lr,
                                                             betas=(beta1, beta2), eps=1e-8),
}
# a learning rate that trains the default models well; alpha still has to be tuned
DEFAULT_LRS = {"sgd": 0.1, "momentum": 0.1, "rmsprop": 1e-3, "adam": 3e-3}

__all__ = ["DEFAULT_LRS", "OPTIMIZERS", "SCHEDULES", "check_lr", "check_schedule",
           "create_optimizer", "lambda_lr", "learning_rate", "list_optimizers"]


def list_optimizers() -> list[str]:
    return sorted(OPTIMIZERS)


def create_optimizer(name: str, params, lr: float | None = None,
                     **hyperparameters) -> torch.optim.Optimizer:
    """An optimiser by name with learning rate ``lr`` (alpha > 0; default ``DEFAULT_LRS``)."""
    if name not in OPTIMIZERS:
        raise DeepnotesError(unknown_name("optimizer", name, list_optimizers()))
    lr = DEFAULT_LRS[name] if lr is None else lr
    check_lr(lr)
    return OPTIMIZERS[name](params, lr, **hyperparameters)


def check_lr(lr: float) -> None:
    """alpha must be a positive, finite number."""
    if not 0 < lr < float("inf"):
        raise DeepnotesError(f"--lr {lr}: the learning rate must be > 0 and finite")
