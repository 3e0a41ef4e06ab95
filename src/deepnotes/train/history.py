"""history.csv: one row an epoch (epoch, train_loss, train_accuracy, dev_loss, dev_accuracy,
dev_f1, lr, seconds), written atomically after each epoch; and the dev columns that can choose
the best epoch (``--monitor``)."""

from __future__ import annotations

import csv
from pathlib import Path

from deepnotes import atomic

COLUMNS = ["epoch", "train_loss", "train_accuracy", "dev_loss", "dev_accuracy", "dev_f1", "lr",
           "seconds"]
MONITORS = ("dev_loss", "dev_accuracy", "dev_f1")  # the first is lowest best, the others highest


def improves(monitor: str, value: float, best: float | None, min_delta: float = 0.0) -> bool:
    """Whether ``value`` of ``monitor`` beats ``best`` by more than ``min_delta`` (a loss by
    being lower, accuracy and F1 by being higher); any value beats no best at all."""
    if best is None:
        return True
    return value < best - min_delta if monitor == "dev_loss" else value > best + min_delta


def write_history(path: Path, history: list[dict]) -> None:
    atomic.write_text(path, history_text(history))


def history_text(history: list[dict]) -> str:
    """The CSV text of ``history``."""
    return atomic.csv_text(COLUMNS, history)


def read_history(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: float(v) if v else None for k, v in row.items()} for row in csv.DictReader(f)]
