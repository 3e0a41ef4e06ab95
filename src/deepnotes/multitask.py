"""Multi-task learning: one network, one sigmoid output per task, a loss over the labels present.

The notes' example: one image may hold a pedestrian, a car, a stop sign and a traffic light at once,
so y^(i) is a vector of T labels in {0, 1}, and some entries are unknown ("?" in the notes' table).
With yhat_j = sigma(z_j) and P the set of (example i, task j) whose label is present,

    J = 1/|P| sum_{(i,j) in P} L(yhat_j^(i), y_j^(i)),
    L(yhat, y) = -(y log yhat + (1 - y) log(1 - yhat)),

so a missing label changes neither J nor its gradient. Unlike softmax the tasks are not
exclusive: any number of them can be 1. A missing label is stored as ``MISSING`` (the same
"ignore" value the sequence tasks use); a task's prediction is 1 when yhat_j > 0.5, i.e. z_j > 0.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from deepnotes import metrics
from deepnotes.data.dataset import IGNORE

MISSING = IGNORE


def masked_bce(z: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """J above for logits z (N, T) and labels y (N, T) in {0, 1, MISSING}: the mean over present
    labels ("mean"; 0 when none is present) or their sum ("sum")."""
    present = y != MISSING
    losses = F.binary_cross_entropy_with_logits(z, y.clamp(min=0).to(z.dtype), reduction="none")
    total = torch.where(present, losses, torch.zeros_like(losses)).sum()
    if reduction == "sum":
        return total
    return total / present.sum().clamp(min=1)


def predict(z: torch.Tensor) -> torch.Tensor:
    """1 where sigma(z) > 0.5, else 0 (int64)."""
    return (z > 0).long()


def is_multitask(z: torch.Tensor, y: torch.Tensor) -> bool:
    """Logits and targets of the same 2-D shape (N, T): T binary tasks (sequence models give
    3-D logits, single-label classifiers 1-D targets)."""
    return z.dim() == 2 and y.dim() == 2 and z.shape == y.shape


def report(y_true, y_pred, tasks: list[str]) -> dict:
    """metrics.json's fields for T binary tasks, counting only present labels: ``accuracy``
    (correct / present), ``precision``/``recall``/``f1`` (macro over the tasks), ``f1_micro``
    (TP, FP, FN pooled over tasks), ``f1_weighted`` (by positives), ``per_class`` (one row per
    task: precision, recall, F1 of the positive class, support = present labels, positives) and
    ``confusion_matrix`` (one [[TN, FP], [FN, TP]] per task)."""
    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    rows, cms = [], []
    for j, name in enumerate(tasks):
        present = yt[:, j] != MISSING
        cm = metrics.confusion_matrix(yt[present, j], yp[present, j], num_classes=2)
        p, r, f = metrics.precision_recall_f1(yt[present, j], yp[present, j], average="binary",
                                              num_classes=2)
        rows.append({"class": name, "precision": p, "recall": r, "f1": f,
                     "support": int(present.sum()), "positives": int(cm[1].sum())})
        cms.append(cm.tolist())
    positives = np.array([row["positives"] for row in rows], dtype=float)
    f1s = np.array([row["f1"] for row in rows])
    present = yt != MISSING
    f1_micro = metrics.precision_recall_f1(yt[present], yp[present], average="binary",
                                           num_classes=2)[2]
    return {
        "accuracy": float((yt[present] == yp[present]).mean()) if present.any() else 0.0,
        "precision": float(np.mean([row["precision"] for row in rows])),
        "recall": float(np.mean([row["recall"] for row in rows])),
        "f1": float(f1s.mean()),
        "f1_micro": f1_micro,
        "f1_weighted": float(f1s @ positives / positives.sum()) if positives.sum() else 0.0,
        "per_class": rows, "confusion_matrix": cms}


def hide_labels(y: torch.Tensor, fraction: float, seed: int = 0) -> torch.Tensor:
    """A copy of y (N, T) with each label replaced by MISSING with probability ``fraction``
    (the notes' "?" entries, for experiments)."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.rand(y.shape, generator=g) < fraction
    return torch.where(hidden, torch.full_like(y, MISSING), y)
