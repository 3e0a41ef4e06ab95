"""Multi-task learning: one network, one sigmoid output per task, a loss over the labels present.

The course's example: one image may hold a pedestrian, a car, a stop sign and a traffic light at
once, so y^(i) is a vector of T labels in {0, 1}, and some entries are unknown ("?" in the
course's table); the notes name multi-task learning. With yhat_j = sigma(z_j) and P the set
of (example i, task j) whose label is present, the loss is

    J = 1/|P| sum_{(i,j) in P} L(yhat_j^(i), y_j^(i)),
    L(yhat, y) = -(y log yhat + (1 - y) log(1 - yhat)),

so a missing label changes neither J nor its gradient. The course divides the same sum by the m
examples instead (``MultiTask("examples")``, ``--multitask-loss examples``). Unlike softmax
the tasks are not exclusive: any number of them can be 1. A missing label is stored as
``MISSING`` (the same "ignore" value the sequence tasks use); a task's prediction is 1 when
yhat_j > 0.5, i.e. z_j > 0.
"""

from __future__ import annotations

import torch

from deepnotes.train.tasks import MISSING, MultiTask, masked_bce
from deepnotes.train.tasks import multitask_report as report

__all__ = ["MISSING", "MultiTask", "hide_labels", "masked_bce", "predict", "report"]


def predict(z: torch.Tensor) -> torch.Tensor:
    """1 where sigma(z) > 0.5, else 0 (int64): the task's prediction (see
    :class:`deepnotes.train.tasks.MultiTask`, where the loss and the report live too)."""
    return MultiTask().predict(z)


def hide_labels(y: torch.Tensor, fraction: float, seed: int = 0) -> torch.Tensor:
    """A copy of y (N, T) with each label replaced by MISSING with probability ``fraction``
    (the course's "?" entries, for experiments)."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.rand(y.shape, generator=g) < fraction
    return torch.where(hidden, torch.full_like(y, MISSING), y)
