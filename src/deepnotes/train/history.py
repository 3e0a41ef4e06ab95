"""history.csv: one row an epoch (epoch, train_loss, train_accuracy, dev_loss, dev_accuracy, lr,
seconds), written atomically after each epoch."""

from __future__ import annotations

import csv
from pathlib import Path

from deepnotes import atomic

COLUMNS = ["epoch", "train_loss", "train_accuracy", "dev_loss", "dev_accuracy", "lr", "seconds"]


def write_history(path: Path, history: list[dict]) -> None:
    atomic.write_text(path, history_text(history))


def history_text(history: list[dict]) -> str:
    """The CSV text of ``history``."""
    return atomic.csv_text(COLUMNS, history)


def read_history(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: float(v) if v else None for k, v in row.items()} for row in csv.DictReader(f)]
