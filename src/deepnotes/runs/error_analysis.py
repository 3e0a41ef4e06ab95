"""Manual error analysis (``deepnotes errors``): a run's misclassified examples, the most
confident mistakes first, as errors.csv and (for images) a contact sheet errors.png: the course's
advice to look at about a hundred mistakes and count what kinds they are before deciding what to
work on."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from deepnotes import atomic
from deepnotes.data import Dataset
from deepnotes.device import resolve_device
from deepnotes.errors import DeepnotesError
from deepnotes.runs.build import batches, build_data
from deepnotes.runs.config import RunConfig, read_config
from deepnotes.runs.folder import load_trained
from deepnotes.train import plots

ANALYSABLE = ("image", "table", "tokens")  # one label an example
SHEET_MAX = 100  # tiles on a contact sheet; the CSV lists every requested mistake
CSV_COLUMNS = ["rank", "index", "true_label", "predicted_label", "confidence", "true_probability"]


def misclassified(run_dir: str | Path, split: str = "dev", n: int | None = 100,
                  device: str = "auto") -> tuple[list[dict], RunConfig, Dataset]:
    """The ``n`` misclassified examples of a run's ``split`` with the highest confidence
    (softmax probability of the predicted class), as rows of :data:`CSV_COLUMNS`; with the run's
    config and data set. ``index`` is the example's position in the data set."""
    config = read_config(run_dir)
    if config.kind not in ANALYSABLE:
        raise DeepnotesError(f"{run_dir}: a {config.kind} run predicts a label per step; error "
                             f"analysis lists whole examples of {', '.join(ANALYSABLE)} runs")
    if config.targets:
        raise DeepnotesError(f"{run_dir}: a multi-task run has several labels an example; error "
                             "analysis lists single-label runs' mistakes")
    if n is not None and n < 1:
        raise DeepnotesError(f"--n {n}: expected at least 1")
    dataset, splits = build_data(config)
    if split not in splits.names():
        raise DeepnotesError(f"--split {split}: {run_dir} has no such split "
                             f"(it has {', '.join(splits.names())})")
    where = resolve_device(device)
    model = load_trained(run_dir, config).to(where)
    idx: torch.Tensor = getattr(splits, split)
    task = config.task
    probs = []
    with torch.inference_mode():
        for x, y in batches(config, dataset, idx, where).epoch():
            probs.append(torch.softmax(task.forward(model, x, y)[0].float(), 1).cpu())  # (B, K)
    p = torch.cat(probs)  # (m_split, K)
    confidence, pred = p.max(1)
    y_true = dataset.y[idx]
    wrong = (pred != y_true).nonzero().flatten()
    order = wrong[confidence[wrong].argsort(descending=True, stable=True)][:n]
    classes = config.classes
    rows: list[dict] = [
        {"rank": rank, "index": int(idx[i]), "true_label": classes[int(y_true[i])],
         "predicted_label": classes[int(pred[i])], "confidence": float(confidence[i]),
         "true_probability": float(p[i, y_true[i]])}
        for rank, i in enumerate(order.tolist(), start=1)]
    if config.kind == "tokens" and dataset.vocab is not None:
        for row in rows:
            ids = dataset.x[row["index"]].tolist()
            row["text"] = " ".join(dataset.vocab[t] for t in ids if t != 0)  # 0: <pad>
    return rows, config, dataset


def errors_csv(rows: list[dict]) -> str:
    """The rows as CSV text: rank, index, true and predicted label, confidence (and text)."""
    columns = CSV_COLUMNS + (["text"] if rows and "text" in rows[0] else [])
    return atomic.csv_text(columns, [{**row, "confidence": f"{row['confidence']:.6f}",
                                      "true_probability": f"{row['true_probability']:.6f}"}
                                     for row in rows])


def contact_sheet(rows: list[dict], x, title: str = "") -> bytes:
    """A PNG of the first :data:`SHEET_MAX` mistakes' images (``x``: uint8 (m, n_C, n_H, n_W)),
    each tile titled with its data-set index, true and predicted label and confidence."""
    plt = plots.pyplot()
    rows = rows[:SHEET_MAX]
    cols = max(1, min(10, len(rows)))
    lines = -(-len(rows) // cols)
    fig, axes = plt.subplots(lines, cols, figsize=(1.5 * cols, 1.9 * lines + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, row in zip(axes.flat, rows):
        image = x[row["index"]].cpu()  # (n_C, n_H, n_W)
        if image.shape[0] == 1:
            ax.imshow(image[0].numpy(), cmap="gray")
        else:
            ax.imshow(image[:3].permute(1, 2, 0).numpy())
        ax.set_title(f"#{row['index']} true {row['true_label']}\npred {row['predicted_label']} "
                     f"{row['confidence']:.2f}", fontsize=7, color="firebrick")
    if title:
        fig.suptitle(title, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def write_error_analysis(run_dir: str | Path, out: str | Path | None = None, split: str = "dev",
                         n: int | None = 100, device: str = "auto") -> dict:
    """Write ``errors.csv`` (and, for image runs, ``errors.png``) into ``out`` (default: the run
    folder), atomically; return {"rows", "csv", "png" (None without images), "kind"}."""
    rows, config, dataset = misclassified(run_dir, split, n, device)
    out_dir = Path(out) if out is not None else Path(run_dir)
    png = None
    if config.kind == "image" and rows:
        title = f"{split}: {len(rows)} most confident mistakes" + (
            f" (first {SHEET_MAX} shown)" if len(rows) > SHEET_MAX else "")
        png_bytes = contact_sheet(rows, dataset.x, title)  # made before anything is written
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeepnotesError(f"--out {out_dir}: cannot write there ({exc.strerror})") from None
    stem = "errors" if split == "dev" else f"errors-{split}"
    csv_path = out_dir / f"{stem}.csv"
    atomic.write_text(csv_path, errors_csv(rows))
    if config.kind == "image" and rows:
        png = out_dir / f"{stem}.png"
        atomic.write_bytes(png, png_bytes)
    return {"rows": rows, "csv": csv_path, "png": png, "kind": config.kind}
