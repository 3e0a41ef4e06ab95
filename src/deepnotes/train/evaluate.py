"""Scoring a model on a split: the mean loss, and every label and prediction, batch by batch."""

from __future__ import annotations

import torch

from deepnotes.data.dataset import IGNORE
from deepnotes.data.loader import Batches
from deepnotes.train.precision import inference_dtype
from deepnotes.train.tasks import Classification, Task


@torch.inference_mode()
def evaluate(model, batches: Batches, task: Task | None = None,
             precision: str = "32") -> dict:
    """Mean loss, labels and predictions of ``task`` (default: classification) over ``batches``:
    y_true and y_pred hold the counted targets (IGNORE dropped), or where the task keeps missing
    labels (several binary tasks) the (N, T) matrices, missing labels kept as IGNORE in y_true."""
    task = task or Classification()
    model.eval()
    total, counts = torch.zeros((), dtype=torch.float64, device=batches.device), 0
    ys, preds = Collected(batches.num_examples), Collected(batches.num_examples)
    device = batches.device
    amp = inference_dtype(precision, device)
    for x, y in batches.epoch():
        with torch.autocast(device.type, amp or torch.float32, enabled=amp is not None):
            z, y = task.forward(model, x, y)
        z = z.float()
        total += task.loss(z, y, reduction="sum")
        counted = y != IGNORE
        counts += task.count(y)
        keep = slice(None) if task.keeps_missing else counted
        ys.add(y[keep], len(y))
        preds.add(task.predict(z)[keep], len(y))
    model.train()
    return {"loss": float(total) / max(1, counts), "y_true": ys.result().cpu(),
            "y_pred": preds.result().cpu()}


class Collected:
    """Rows gathered batch by batch into one tensor allocated at the first batch, room for
    every example's rows. Kept as one small tensor a batch, they would lie scattered among the
    batches' large blocks that the C allocator reuses, and its heap would grow with the number
    of batches (hundreds of MB over a large split)."""

    def __init__(self, examples: int):
        self.examples, self.n = examples, 0
        self.data: torch.Tensor | None = None

    def add(self, rows: torch.Tensor, batch: int) -> None:
        """``rows`` of a batch of ``batch`` examples (at most ``rows_per_example x batch``)."""
        if self.data is None:
            per_example = max(1, -(-len(rows) // max(1, batch)))
            self.data = torch.empty((self.examples * per_example, *rows.shape[1:]),
                                    dtype=rows.dtype, device=rows.device)
        if self.n + len(rows) > len(self.data):  # more rows an example than the first batch had
            grown = torch.empty((2 * len(self.data) + len(rows), *rows.shape[1:]),
                                dtype=rows.dtype, device=rows.device)
            grown[:self.n] = self.data[:self.n]
            self.data = grown
        self.data[self.n:self.n + len(rows)] = rows
        self.n += len(rows)

    def result(self) -> torch.Tensor:
        return self.data[:self.n] if self.data is not None else torch.empty(0, dtype=torch.int64)
