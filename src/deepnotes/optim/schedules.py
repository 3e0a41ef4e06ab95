"""Learning-rate decay: alpha as a pure function of the step, so a resumed run needs only the step.

A schedule is written ``NAME`` or ``NAME:ARG`` (``--schedule inverse:0.5``). With epoch number
``e`` (counted from 0), step ``t`` of ``T`` and the base rate alpha_0:

``constant``             alpha = alpha_0
``inverse[:decay_rate]`` alpha = alpha_0 / (1 + decay_rate * e)        (the course's decay; 1.0)
``exponential[:base]``   alpha = base^e * alpha_0                      (0.95)
``step[:every[:factor]]`` alpha = factor^floor(e / every) * alpha_0    (a third of the run, 0.1)
``cosine``               alpha = alpha_0 * (1 + cos(pi * t / T)) / 2
``warmup[:share]``       alpha rises linearly from alpha_0 / 25 to alpha_0 over the first ``share``
                         of the steps (0.1), then stays
``onecycle[:share]``     warm-up over ``share`` (0.25), then the half cosine down to ~0

Use them from any PyTorch loop with :func:`lambda_lr`.
"""

from __future__ import annotations

import functools
import math

import torch

from deepnotes.errors import DeepnotesError, unknown_name

# name -> (default arguments, alpha / alpha_0 as a function of (args, epoch, t, T, epochs))
_RULES = {
    "constant": ((), lambda a, e, t, T, E: 1.0),
    "inverse": ((1.0,), lambda a, e, t, T, E: 1.0 / (1.0 + a[0] * e)),
    "exponential": ((0.95,), lambda a, e, t, T, E: a[0] ** e),
    "step": ((None, 0.1), lambda a, e, t, T, E: a[1] ** (e // (a[0] or max(1, round(E / 3))))),
    "cosine": ((), lambda a, e, t, T, E: 0.5 * (1 + math.cos(math.pi * min(1.0, t / T)))),
    "warmup": ((0.1,), lambda a, e, t, T, E: _warm(t, T, a[0], after=1.0)),
    "onecycle": ((0.25,), lambda a, e, t, T, E: _warm(t, T, a[0], after=None)),
}
SCHEDULES = tuple(_RULES)


def _warm(t: int, T: int, share: float, after: float | None) -> float:
    warm = max(1, int(T * share))
    if t < warm:
        return 0.04 + 0.96 * t / warm
    if after is not None:
        return after
    progress = (t - warm) / max(1, T - warm)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@functools.lru_cache(maxsize=64)  # the trainer asks for alpha every step: parse a spec once
def check_schedule(spec: str) -> tuple[str, tuple]:
    """``"inverse:0.5"`` -> ("inverse", (0.5,)); an unknown name or a bad argument is refused."""
    name, *given = str(spec).split(":")
    if name not in _RULES:
        raise DeepnotesError(unknown_name("schedule", name, list(SCHEDULES)))
    defaults = _RULES[name][0]
    if len(given) > len(defaults):
        raise DeepnotesError(f"--schedule {spec}: {name} takes at most {len(defaults)} "
                             f"argument{'s' if len(defaults) != 1 else ''}")
    try:
        values = [float(v) for v in given]
    except ValueError:
        raise DeepnotesError(f"--schedule {spec}: arguments must be numbers") from None
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise DeepnotesError(f"--schedule {spec}: arguments must be positive, finite numbers")
    if name in ("warmup", "onecycle") and values and values[0] >= 1:
        raise DeepnotesError(f"--schedule {spec}: the warm-up share must be below 1")
    if name == "step" and values:
        values[0] = max(1, round(values[0]))
    return name, tuple(values) + tuple(defaults[len(values):])


def learning_rate(schedule: str, base_lr: float, step: int, total_steps: int,
                  steps_per_epoch: int | None = None) -> float:
    """alpha at ``step`` (0-based) of ``total_steps``; epochs are ``steps_per_epoch`` long."""
    name, args = check_schedule(schedule)
    per_epoch = steps_per_epoch or total_steps
    epochs = max(1, math.ceil(total_steps / per_epoch))
    factor = _RULES[name][1](args, step // per_epoch, step, max(1, total_steps), epochs)
    return base_lr * factor


def lambda_lr(optimizer: torch.optim.Optimizer, schedule: str, total_steps: int,
              steps_per_epoch: int | None = None) -> torch.optim.lr_scheduler.LambdaLR:
    """A torch scheduler for ``schedule``; call its ``step()`` after every optimizer step."""
    check_schedule(schedule)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda t: learning_rate(schedule, 1.0, t, total_steps, steps_per_epoch))
