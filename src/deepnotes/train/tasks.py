"""What is learned from each kind of data: the task gives a batch's logits and targets, the loss,
the predicted labels and the metrics that judge it. The trainer and the report call the task and
never look at shapes or model attributes.

==============  ================  ===============================  ===========================
task            data kinds        loss J                           judged also by
==============  ================  ===============================  ===========================
Classification  image, table,     cross-entropy of softmax(z)      --
                tokens
MultiTask       a table with      masked binary cross-entropy of   P/R/F1 of each task's
                --targets         sigmoid(z_j), present labels     positive class
LanguageModel   lm                cross-entropy of each next char  perplexity exp(J)
Tagging         tags              cross-entropy of each step's tag --
Pairs           pairs             cross-entropy of each output     exact match of whole
                                  step, under teacher forcing      greedy outputs
==============  ================  ===============================  ===========================

A task's ``unit`` names what the training rate counts (images/s, rows/s, sequences/s, tokens/s;
:data:`UNITS` by data kind): one an example, or with "tokens" the targets of a sequence's
steps that the loss counts (padding not).

A new kind of data is a new :class:`Task` subclass and one line each in :data:`TASKS` and
:data:`UNITS`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from deepnotes import metrics
from deepnotes.data.dataset import IGNORE, Dataset
from deepnotes.data.vocabulary import teacher_forcing
from deepnotes.errors import DeepnotesError
from deepnotes.models.sequence import exact_match

MISSING = IGNORE  # a multi-task label that is not known ("?" in the course's table)
# what the multi-task loss is averaged over: the labels present (1/|P|) or the examples (1/m)
PER = ("present", "examples")


class Task:
    """What one kind of data asks of the trainer and the report. By default: logits z (N, K) of
    the batch, L = cross-entropy of softmax(z) over the targets that are not IGNORE, the
    prediction argmax_k z_k, and the classification report."""

    name = "classification"
    keeps_missing = False  # evaluate keeps targets y == IGNORE (multi-task's missing labels)
    unit = "examples"  # what the training rate counts; task_for sets it from the data kind

    def forward(self, net, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits z, targets) of a batch."""
        return net(x), y

    def loss(self, z: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        return F.cross_entropy(z, y, ignore_index=IGNORE, reduction=reduction)

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        return z.argmax(1)

    def report(self, y_true, y_pred, classes: list[str]) -> dict:
        """metrics.json's fields of a split: accuracy, P/R/F1 (macro, micro, weighted), per
        class, confusion matrix."""
        return metrics.classification_report(y_true, y_pred, num_classes=len(classes),
                                             class_names=classes)

    def count(self, y: torch.Tensor) -> int:
        """What a batch's summed loss is divided by in the mean: its counted targets."""
        return int((y != IGNORE).sum())

    def extra_metrics(self, model, dataset: Dataset, idx: torch.Tensor, loss: float) -> dict:
        """What else judges the task on the examples ``idx`` of ``dataset`` (mean loss
        ``loss``); read only by the tasks that need them."""
        return {}


class Classification(Task):
    """One label an example: images, tables and token sequences (many-to-one). With
    ``class_weights`` w (one per class), J = 1/m sum_i w_{y_i} L(yhat_i, y_i): an example of
    class k counts w_k times (``--class-weights balanced``: w_k = m / (K m_k), so that every
    class weighs as much in J as the others; their mean over the examples is 1)."""

    def __init__(self, class_weights: list[float] | None = None):
        self.class_weights = class_weights
        self._w: torch.Tensor | None = None  # the weights on the logits' device, made once

    def loss(self, z, y, reduction="mean"):
        if self.class_weights is None:
            return super().loss(z, y, reduction)
        if self._w is None or self._w.device != z.device or self._w.dtype != z.dtype:
            self._w = torch.tensor(self.class_weights, dtype=z.dtype, device=z.device)
        total = F.cross_entropy(z, y, weight=self._w, ignore_index=IGNORE, reduction="sum")
        return total / max(self.count(y), 1) if reduction == "mean" else total


def balanced_weights(y: torch.Tensor, num_classes: int) -> list[float]:
    """w_k = m / (K m_k) of labels ``y`` (m of them, m_k of class k; a class without examples
    gets weight 1): scikit-learn's "balanced" class weights."""
    counts = torch.bincount(y, minlength=num_classes).tolist()
    return [len(y) / (num_classes * n) if n else 1.0 for n in counts]


class MultiTask(Task):
    """Several binary tasks an example (multi-task learning): z, y are (N, T); with
    yhat_j = sigma(z_j) and P the (example, task) pairs whose label is present,
    J = 1/|P| sum_{(i,j) in P} L(yhat_j^(i), y_j^(i)) (``per="present"``, the default), or the
    course's J = 1/m sum_i sum_{j: (i,j) in P} L(yhat_j^(i), y_j^(i)) (``per="examples"``); a
    task is predicted 1 when z_j > 0.

    The two differ by the factor |P| / m, the present labels an example: the same minimum,
    but with 1/m the gradient's size, and so the learning rate that suits it, changes with the
    number of tasks and the share of "?" labels. 1/|P| keeps alpha what it is for one task."""

    name = "multitask"
    keeps_missing = True

    def __init__(self, per: str = "present"):
        if per not in PER:
            raise DeepnotesError(f"--multitask-loss {per}: expected one of {', '.join(PER)}")
        self.per = per

    def loss(self, z, y, reduction="mean"):
        return masked_bce(z, y, reduction, self.per)

    def count(self, y):
        return len(y) if self.per == "examples" else super().count(y)

    def predict(self, z):
        return (z > 0).long()

    def report(self, y_true, y_pred, classes):
        return multitask_report(y_true, y_pred, classes)


class _PerStep(Task):
    """A label per time step: the outputs (B, T, K) and targets (B, T) are laid out as (B, K, T)
    and (B, T), which cross-entropy reads step by step. With ``over_present`` the macro P/R/F1
    average only the tokens that occur (as targets or predictions): the specials <pad>, <unk>,
    <bos> of a vocabulary are never targets and would count as zeros."""

    over_present = False
    unit = "tokens"

    def forward(self, net, x, y):
        return net(x).transpose(1, 2), y

    def report(self, y_true, y_pred, classes):
        report = super().report(y_true, y_pred, classes)
        if not self.over_present:
            return report
        cm = np.asarray(report["confusion_matrix"])
        present = [row for row, n in zip(report["per_class"], cm.sum(0) + cm.sum(1)) if n > 0]
        for key in ("precision", "recall", "f1"):
            report[key] = float(np.mean([row[key] for row in present])) if present else 0.0
        return report


class LanguageModel(_PerStep):
    """Character language model: each step predicts the next character; perplexity exp(J)."""

    name = "lm"
    over_present = True

    def extra_metrics(self, model, dataset, idx, loss):
        return {"perplexity": math.exp(min(loss, 700.0))}


class Tagging(_PerStep):
    """Many-to-many of equal length: a tag for each token."""

    name = "tags"


class Pairs(_PerStep):
    """Encoder-decoder: fed y<0..T-1> (teacher forcing), it predicts y<1..T>; judged also by the
    exact match of whole greedy outputs."""

    name = "pairs"
    over_present = True

    def forward(self, net, x, y):
        y_in, y = teacher_forcing(y)
        return net(x, y_in).transpose(1, 2), y

    def extra_metrics(self, model, dataset, idx, loss):
        return {"exact_match": exact_match(model, dataset.x[idx], dataset.y[idx])}


TASKS = {"image": Classification, "table": Classification, "tokens": Classification,
         "lm": LanguageModel, "tags": Tagging, "pairs": Pairs}
CLASSIFIED = tuple(k for k, task in TASKS.items() if task is Classification)  # one class each
# what the training rate of a kind counts: an image, a table's row (several --targets too), a
# text classified whole; a character (lm), word (tags) or output token (pairs) predicted
UNITS = {"image": "images", "table": "rows", "tokens": "sequences", "lm": "tokens",
         "tags": "tokens", "pairs": "tokens"}


def task_for(kind: str, multitask: bool = False, per: str = "present",
             class_weights: list[float] | None = None) -> Task:
    """The task of a data set's kind (``Dataset.kind``); ``multitask``: a table's --targets,
    its loss averaged ``per`` present label or example (:class:`MultiTask`);
    ``class_weights``: a classification's weight of each class in the loss."""
    if multitask:
        task: Task = MultiTask(per)
    elif class_weights is not None:
        task = Classification(class_weights)
    else:
        task = TASKS[kind]()
    task.unit = UNITS[kind]
    return task


def masked_bce(z: torch.Tensor, y: torch.Tensor, reduction: str = "mean",
               per: str = "present") -> torch.Tensor:
    """J above for logits z (N, T) and labels y (N, T) in {0, 1, MISSING}: the sum over present
    labels ("sum"), or divided by their number |P| (``per="present"``; 0 when none is present)
    or by the N examples (``per="examples"``), with
    L(yhat, y) = -(y log yhat + (1 - y) log(1 - yhat)); a missing label changes neither J nor
    its gradient."""
    present = y != MISSING
    losses = F.binary_cross_entropy_with_logits(z, y.clamp(min=0).to(z.dtype), reduction="none")
    total = torch.where(present, losses, torch.zeros_like(losses)).sum()
    if reduction == "sum":
        return total
    return total / (max(1, len(y)) if per == "examples" else present.sum().clamp(min=1))


def multitask_report(y_true, y_pred, tasks: list[str]) -> dict:
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
