"""The training rate: a task's units (``Task.unit``: images, rows, sequences, tokens) trained on
a second. The progress bar, the epoch's log line and TensorBoard show the same number.

Under torchrun the rate is global: all ranks' units over the wall time of rank 0 (the ranks take
their steps together). After s steps of an epoch the examples trained on are those of s global
batches of B,

    examples(s) = min(s B, n)      (n: the training examples; a dropped short batch not counted),

the same on every rank without asking the others. Tokens differ from batch to batch: they are
the targets the loss counted (padding not), summed over the ranks.
"""

from __future__ import annotations


def examples_done(steps: int, batch_size: int, num_examples: int) -> int:
    """The examples in the first ``steps`` global batches of ``batch_size`` of an epoch over
    ``num_examples``: min(s B, n)."""
    return min(steps * batch_size, num_examples)


def units_done(unit: str, steps: int, batch_size: int, num_examples: int, tokens: int) -> int:
    """The units the first ``steps`` steps trained on: ``tokens`` (all ranks' counted targets)
    when the unit is tokens, else the examples of :func:`examples_done`."""
    return int(tokens) if unit == "tokens" else examples_done(steps, batch_size, num_examples)


def rate(units: float, seconds: float) -> float:
    """Units a second."""
    return units / max(seconds, 1e-9)


def label(unit: str) -> str:
    """``images/s``, ``rows/s``, ``sequences/s``, ``tokens/s``."""
    return f"{unit}/s"
