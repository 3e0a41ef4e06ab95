"""Training strategy from a run's errors: which gap is largest, and what the course says to do.

Error = 1 - accuracy on each split. With human-level error as a proxy for Bayes error:

    avoidable bias        = train error     - human error
    variance              = train-dev error - train error
    data mismatch         = dev error       - train-dev error
    overfitting to dev    = test error      - dev error

Without a train-dev split (a split cut from the training pool, same distribution as train, never
trained on) variance falls back to dev error - train error, and data mismatch cannot be told apart
from variance, so it is not computed. The largest gap says where to work next:

>>> from deepnotes.strategy import diagnose
>>> d = diagnose({"train": 0.08, "train_dev": 0.10, "dev": 0.12, "test": 0.12}, human_error=0.01)
>>> d.largest, round(d.gaps["avoidable_bias"], 4)
('avoidable_bias', 0.07)
>>> d.actions[0]
'train a bigger network'
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from deepnotes.errors import DeepnotesError

REQUIRED = ("train", "dev", "test")
SPLIT_ORDER = ("train", "train_dev", "dev", "test")

GAPS = {  # name -> (label, formula)
    "avoidable_bias": ("avoidable bias", "train - human"),
    "variance": ("variance", "train-dev - train"),
    "data_mismatch": ("data mismatch", "dev - train-dev"),
    "dev_overfitting": ("overfitting to dev", "test - dev"),
}

ACTIONS = {  # the course's remedies for each gap
    "avoidable_bias": [
        "train a bigger network",
        "train longer",
        "use a better optimisation algorithm (momentum, RMSprop, Adam)",
        "search the architecture and hyperparameters (e.g. a CNN or RNN that fits the data)",
    ],
    "variance": [
        "get more training data",
        "regularisation (L2 via --weight-decay, dropout, data augmentation via --augment)",
        "search the architecture and hyperparameters",
    ],
    "data_mismatch": [
        "carry out manual error analysis (deepnotes errors RUN) to see how training data differs "
        "from dev/test",
        "make the training data more like dev/test: collect more data like it, or synthesise it "
        "(artificial data synthesis)",
    ],
    "dev_overfitting": [
        "get a bigger dev set (the model is tuned to this one)",
    ],
}


@dataclass
class Diagnosis:
    """Errors per split, the gaps between them, the largest gap and the course's actions for it."""

    errors: dict  # split -> error (1 - accuracy), in the order train, train_dev, dev, test
    human_error: float
    gaps: dict  # gap name -> value; data_mismatch only with a train-dev split
    largest: str
    actions: list[str]
    notes: list[str] = field(default_factory=list)

    def formula(self, gap: str) -> str:
        """The gap's formula as computed here (variance without train-dev: dev - train)."""
        if gap == "variance" and "train_dev" not in self.errors:
            return "dev - train"
        return GAPS[gap][1]

    def to_dict(self) -> dict:
        return {"errors": self.errors, "human_error": self.human_error, "gaps": self.gaps,
                "largest": self.largest, "actions": self.actions, "notes": self.notes}


def diagnose(errors: dict, human_error: float = 0.0) -> Diagnosis:
    """The gaps of the notes from errors per split (``train``, ``dev``, ``test``; ``train_dev``
    optional), each a fraction in [0, 1], and human error as a proxy for Bayes error:

    avoidable bias = train - human; variance = train-dev - train (dev - train without train-dev);
    data mismatch = dev - train-dev (only with train-dev); overfitting to dev = test - dev.
    """
    check_human_error(human_error)
    missing = [name for name in REQUIRED if name not in errors]
    if missing:
        raise DeepnotesError(f"errors of the {', '.join(missing)} split(s) are missing; diagnose "
                             "needs train, dev and test (train_dev optional)")
    e = {}
    for name in SPLIT_ORDER:
        if name in errors:
            value = errors[name]
            if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise DeepnotesError(f"{name} error {value!r}: expected a fraction in [0, 1]")
            e[name] = float(value)
    gaps = {"avoidable_bias": e["train"] - human_error}
    notes = []
    if "train_dev" in e:
        gaps["variance"] = e["train_dev"] - e["train"]
        gaps["data_mismatch"] = e["dev"] - e["train_dev"]
    else:
        gaps["variance"] = e["dev"] - e["train"]
        notes.append("no train-dev split: variance = dev - train, and data mismatch is not "
                     "computed (train with --train-dev 0.05 to tell them apart)")
    gaps["dev_overfitting"] = e["test"] - e["dev"]
    if human_error == 0:
        notes.append("human error 0 is a proxy for Bayes error; give --human-error E for a "
                     "better estimate")
    if gaps["avoidable_bias"] < 0:
        notes.append("train error is below the human error given: that proxy overestimates "
                     "Bayes error, so avoidable bias is hard to judge past human level")
    largest = max(gaps, key=gaps.get)  # the first of equal gaps, in the notes' order
    return Diagnosis(e, float(human_error), gaps, largest, list(ACTIONS[largest]), notes)


def errors_from_metrics(metrics: dict, source: str = "metrics") -> dict:
    """Error = 1 - accuracy for each split of a metrics.json object; the needed splits checked."""
    if not isinstance(metrics, dict):
        raise DeepnotesError(f"{source}: expected a JSON object with one entry per split")
    missing = [name for name in REQUIRED if name not in metrics]
    if missing:
        present = ", ".join(k for k in metrics) or "none"
        raise DeepnotesError(f"{source}: missing the {', '.join(missing)} split(s) that diagnose "
                             f"needs (train, dev, test; train_dev optional); found: {present}")
    out = {}
    for name in SPLIT_ORDER:
        if name not in metrics:
            continue
        accuracy = metrics[name].get("accuracy") if isinstance(metrics[name], dict) else None
        if not isinstance(accuracy, (int, float)) or not 0 <= accuracy <= 1:
            raise DeepnotesError(f"{source}: split {name} has no accuracy in [0, 1] "
                                 f"(found {accuracy!r})")
        out[name] = 1.0 - accuracy
    return out


def run_errors(run_dir: str | Path) -> dict:
    """Errors per split of a run folder, read from its metrics.json."""
    run_dir = Path(run_dir)
    path = run_dir / "metrics.json"
    if not path.is_file():
        if (run_dir / "config.json").is_file():
            raise DeepnotesError(f"{run_dir}: no metrics.json yet; finish the run first "
                                 f"(deepnotes train --resume {run_dir})")
        raise DeepnotesError(f"{run_dir}: not a deepnotes run folder (no metrics.json)")
    try:
        metrics = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DeepnotesError(f"{path}: not valid JSON ({exc})") from None
    return errors_from_metrics(metrics, str(path))


def diagnose_run(run_dir: str | Path, human_error: float = 0.0) -> Diagnosis:
    """:func:`diagnose` on the errors of a run folder's metrics.json."""
    return diagnose(run_errors(run_dir), human_error)


def check_human_error(value) -> None:
    if not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise DeepnotesError(f"human error {value!r}: expected a fraction in [0, 1), e.g. 0.01")


def parse_human_error(text: str) -> float:
    """``0.01`` or ``1%`` -> 0.01; a fraction in [0, 1), else a one-line error naming the option."""
    expected = "expected a fraction in [0, 1) such as 0.01, or a percent such as 1%"
    raw = text.strip()
    percent = raw.endswith("%")
    try:
        value = float(raw[:-1] if percent else raw)
    except ValueError:
        raise DeepnotesError(f"--human-error {text}: not a number; {expected}") from None
    if percent:
        value /= 100
    if not math.isfinite(value) or not 0 <= value < 1:
        raise DeepnotesError(f"--human-error {text}: {expected}")
    return value


# --- manual error analysis: the misclassified examples, most confident mistakes first ----------

ANALYSABLE = ("image", "table", "tokens")  # one label an example
SHEET_MAX = 100  # tiles on a contact sheet; the CSV lists every requested mistake
CSV_COLUMNS = ["rank", "index", "true_label", "predicted_label", "confidence", "true_probability"]


def misclassified(run_dir: str | Path, split: str = "dev", n: int | None = 100,
                  device: str = "auto") -> tuple[list[dict], dict, object]:
    """The ``n`` misclassified examples of a run's ``split`` with the highest confidence
    (softmax probability of the predicted class), as rows of :data:`CSV_COLUMNS`; with the run's
    config and data set. ``index`` is the example's position in the data set."""
    import torch

    from deepnotes.device import resolve_device
    from deepnotes.train.run import batches, build_data, load_trained, read_config
    from deepnotes.train.trainer import forward

    config = read_config(run_dir)
    if config["kind"] not in ANALYSABLE:
        raise DeepnotesError(f"{run_dir}: a {config['kind']} run predicts a label per step; error "
                             f"analysis lists whole examples of {', '.join(ANALYSABLE)} runs")
    if config.get("targets"):
        raise DeepnotesError(f"{run_dir}: a multi-task run has several labels an example; error "
                             "analysis lists single-label runs' mistakes")
    if n is not None and n < 1:
        raise DeepnotesError(f"--n {n}: expected at least 1")
    dataset, splits = build_data(config)
    if split not in splits.names():
        raise DeepnotesError(f"--split {split}: {run_dir} has no such split "
                             f"(it has {', '.join(splits.names())})")
    device = resolve_device(device)
    model = load_trained(run_dir, config).to(device)
    idx = getattr(splits, split)
    probs = []
    with torch.inference_mode():
        for x, y in batches(config, dataset, idx, device).epoch():
            probs.append(torch.softmax(forward(model, x, y)[0].float(), 1).cpu())  # (B, K)
    p = torch.cat(probs)  # (m_split, K)
    confidence, pred = p.max(1)
    y_true = dataset.y[idx]
    wrong = (pred != y_true).nonzero().flatten()
    order = wrong[confidence[wrong].argsort(descending=True, stable=True)][:n]
    classes = config["classes"]
    rows = [{"rank": rank, "index": int(idx[i]), "true_label": classes[int(y_true[i])],
             "predicted_label": classes[int(pred[i])], "confidence": float(confidence[i]),
             "true_probability": float(p[i, y_true[i]])}
            for rank, i in enumerate(order.tolist(), start=1)]
    if config["kind"] == "tokens" and dataset.vocab is not None:
        for row in rows:
            ids = dataset.x[row["index"]].tolist()
            row["text"] = " ".join(dataset.vocab[t] for t in ids if t != 0)  # 0: <pad>
    return rows, config, dataset


def errors_csv(rows: list[dict]) -> str:
    """The rows as CSV text: rank, index, true and predicted label, confidence (and text)."""
    import csv
    import io

    columns = CSV_COLUMNS + (["text"] if rows and "text" in rows[0] else [])
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "confidence": f"{row['confidence']:.6f}",
                         "true_probability": f"{row['true_probability']:.6f}"})
    return out.getvalue()


def contact_sheet(rows: list[dict], x, title: str = "") -> bytes:
    """A PNG of the first :data:`SHEET_MAX` mistakes' images (``x``: uint8 (m, n_C, n_H, n_W)),
    each tile titled with its data-set index, true and predicted label and confidence."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    from deepnotes import atomic

    rows, config, dataset = misclassified(run_dir, split, n, device)
    out_dir = Path(out) if out is not None else Path(run_dir)
    png = None
    if config["kind"] == "image" and rows:
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
    if config["kind"] == "image" and rows:
        png = out_dir / f"{stem}.png"
        atomic.write_bytes(png, png_bytes)
    return {"rows": rows, "csv": csv_path, "png": png, "kind": config["kind"]}
