"""Learning-rate schedules as pure functions of the step, so a resumed run needs only the step.

``constant``: alpha stays alpha_0.
``onecycle``: alpha rises linearly from alpha_0 / 25 to alpha_0 over the first ``warmup`` share of
the steps, then falls along a half cosine to ~0: big steps once the network is on its way, small
ones at the end where the notes' learning-rate decay helps it settle into the minimum.
"""

from __future__ import annotations

import math

from deepnotes.errors import DeepnotesError, unknown_name

SCHEDULES = ("constant", "onecycle")


def learning_rate(schedule: str, base_lr: float, step: int, total_steps: int,
                  warmup: float = 0.25) -> float:
    """alpha at ``step`` (0-based) of ``total_steps``."""
    if schedule == "constant":
        return base_lr
    if schedule != "onecycle":
        raise DeepnotesError(unknown_name("schedule", schedule, list(SCHEDULES)))
    warm = max(1, int(total_steps * warmup))
    if step < warm:
        return base_lr * (0.04 + 0.96 * step / warm)
    progress = (step - warm) / max(1, total_steps - warm)
    return base_lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
