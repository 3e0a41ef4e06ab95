"""The course's update rules as ``torch.optim.Optimizer`` classes, and learning-rate decay.

``GradientDescent``: W := W - alpha dW. ``Momentum``: v = beta v + (1 - beta) dW; W := W - alpha v.
``RMSprop``: S = beta S + (1 - beta) dW^2; W := W - alpha dW / (sqrt(S) + eps). ``Adam``: both, with
bias correction. Defaults: beta = 0.9 (the course's momentum); Adam beta1 = 0.9, beta2 = 0.999,
eps = 1e-8 (the notes'). Variants (:data:`VARIANTS`): eps inside the root, sqrt(S + eps), as the
notes write Adam, for RMSprop and Adam (RMSprop with eps = 0 is the notes' own), and Adam without
bias correction.
The learning rate alpha must be tuned (``deepnotes tune``).

By name: ``create_optimizer("adam", model.parameters(), lr=3e-3)``.
"""

from __future__ import annotations

import torch

from deepnotes.errors import DeepnotesError, check_range, unknown_name
from deepnotes.optim.adam import Adam
from deepnotes.optim.gradient_descent import GradientDescent
from deepnotes.optim.momentum import Momentum
from deepnotes.optim.rmsprop import RMSprop
from deepnotes.optim.schedules import SCHEDULES, check_schedule, lambda_lr, learning_rate

OPTIMIZERS = {"sgd": GradientDescent, "momentum": Momentum, "rmsprop": RMSprop, "adam": Adam}
# a learning rate that trains the default models well; alpha still has to be tuned
DEFAULT_LRS = {"sgd": 0.1, "momentum": 0.1, "rmsprop": 1e-3, "adam": 3e-3}
# the beta a user tunes first: the average of the gradients (Adam's beta1)
BETA_NAMES = {"momentum": "beta", "rmsprop": "beta", "adam": "beta1"}
# the variants, by option: which rules have them
VARIANTS = {"eps": ("rmsprop", "adam"), "eps_inside_sqrt": ("rmsprop", "adam"),
            "bias_correction": ("adam",)}
FLAGS = {"eps": "--eps", "eps_inside_sqrt": "--eps-inside-sqrt",
         "bias_correction": "--no-bias-correction"}

__all__ = ["BETA_NAMES", "DEFAULT_LRS", "OPTIMIZERS", "SCHEDULES", "Adam", "GradientDescent",
           "Momentum", "RMSprop", "check_lr", "check_schedule", "create_optimizer", "lambda_lr",
           "learning_rate", "list_optimizers"]


def list_optimizers() -> list[str]:
    return sorted(OPTIMIZERS)


def create_optimizer(name: str, params, lr: float | None = None, beta: float | None = None,
                     **hyperparameters) -> torch.optim.Optimizer:
    """An optimiser by name with learning rate ``lr`` (alpha > 0; default ``DEFAULT_LRS[name]``).

    ``beta`` is the rule's averaging weight: beta of momentum and RMSprop, beta1 of Adam (gradient
    descent has none). Other keywords go to the class (``weight_decay``, ``eps``, ...).
    """
    if name not in OPTIMIZERS:
        raise DeepnotesError(unknown_name("optimizer", name, list_optimizers()))
    lr = DEFAULT_LRS[name] if lr is None else lr
    check_lr(lr)
    for key in hyperparameters:
        if key in VARIANTS and name not in VARIANTS[key]:
            raise DeepnotesError(f"{FLAGS[key]}: {name} has no such variant (only "
                                 f"{' and '.join(VARIANTS[key])} do)")
    if beta is not None:
        if name not in BETA_NAMES:
            raise DeepnotesError(f"--beta {beta}: {name} has no beta (momentum, rmsprop and adam "
                                 "do)")
        hyperparameters[BETA_NAMES[name]] = beta
    return OPTIMIZERS[name](params, lr, **hyperparameters)


def check_lr(lr: float) -> None:
    """alpha must be a positive, finite number."""
    check_range("--lr", lr, 0.0, low_open=True)
