"""Pictures a person would rather look at than read: learning curves and the confusion matrix."""

from __future__ import annotations

import io
from pathlib import Path

from deepnotes import atomic


def pyplot():
    """matplotlib's pyplot on the Agg backend (files, no window); imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> None:
    """The figure as a PNG at ``path``, written atomically; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    atomic.write_bytes(path, buf.getvalue())


def learning_curves(history: list[dict], path: Path) -> None:
    """Loss and accuracy per epoch, train beside dev: the level shows bias, the gap variance."""
    plt = pyplot()
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for split, style in (("train", "-o"), ("dev", "--s")):
        if history and history[0].get(f"{split}_loss") is not None:
            ax_loss.plot(epochs, [r[f"{split}_loss"] for r in history], style, label=split)
            ax_acc.plot(epochs, [r[f"{split}_accuracy"] for r in history], style, label=split)
    ax_loss.set(title="loss (cross-entropy)", xlabel="epoch")
    ax_acc.set(title="accuracy", xlabel="epoch")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if history:  # a hand-emptied history draws empty axes, without a legend of nothing
            ax.legend()
    save(fig, path)


def confusion_matrix(matrix: list[list[int]], classes: list[str], path: Path,
                     title: str = "confusion matrix (test)") -> None:
    """Rows are the true class, columns the predicted one; the diagonal is what went right."""
    plt = pyplot()
    k = len(classes)
    size = min(14, 3 + 0.6 * k)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    if k <= 30:
        ax.set_xticks(range(k), classes, rotation=45, ha="right")
        ax.set_yticks(range(k), classes)
        top = max(max(row) for row in matrix) or 1
        for i in range(k):
            for j in range(k):
                ax.text(j, i, matrix[i][j], ha="center", va="center", fontsize=8,
                        color="white" if matrix[i][j] > top / 2 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title)
    save(fig, path)


def task_matrices(matrices: list, tasks: list[str], path: Path,
                  title: str = "confusion matrices (test)") -> None:
    """Several binary tasks: one 2 x 2 matrix [[TN, FP], [FN, TP]] per task, side by side."""
    plt = pyplot()
    cols = min(len(tasks), 6)
    rows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.4 * rows + 0.5), squeeze=False)
    for ax in axes.flat[len(tasks):]:
        ax.axis("off")
    for ax, matrix, task in zip(axes.flat, matrices, tasks):
        ax.imshow(matrix, cmap="Blues")
        top = max(max(row) for row in matrix) or 1
        for i in range(2):
            for j in range(2):
                ax.text(j, i, matrix[i][j], ha="center", va="center", fontsize=9,
                        color="white" if matrix[i][j] > top / 2 else "black")
        ax.set_xticks([0, 1], ["0", "1"])
        ax.set_yticks([0, 1], ["0", "1"])
        ax.set(title=task, xlabel="predicted", ylabel="true")
    fig.suptitle(title)
    save(fig, path)
