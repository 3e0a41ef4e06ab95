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
    """The gaps of the course from errors per split (``train``, ``dev``, ``test``; ``train_dev``
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
    largest = max(gaps, key=gaps.__getitem__)  # the first of equal gaps, in the course's order
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
