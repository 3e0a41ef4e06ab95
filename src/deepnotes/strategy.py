"""Training strategy from a run's errors: which gap is largest, and what to do about it (the
course's analysis; the actions are what deepnotes offers).

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

Each error is an estimate from a split of n examples, with the binomial standard error
sqrt(p(1 - p) / n); a gap between two splits, two independent estimates, has

    SE(p_a - p_b) = sqrt(p_a (1 - p_a) / n_a + p_b (1 - p_b) / n_b)

and the approximate 95% interval gap +- 1.96 SE (avoidable bias: train's SE alone, human error
being given). When the intervals of the largest and the second gap overlap, or a split of
either is under :data:`SMALL_SPLIT` examples, the ranking is uncertain, and the diagnosis says
how many examples would settle it:

>>> d = diagnose({"train": 0.02, "train_dev": 0.10, "dev": 0.12, "test": 0.12},
...              sizes={"train": 5000, "train_dev": 70, "dev": 1000, "test": 1000})
>>> d.largest, d.uncertain
('variance', True)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from deepnotes.errors import DeepnotesError

REQUIRED = ("train", "dev", "test")
SPLIT_ORDER = ("train", "train_dev", "dev", "test")
Z95 = 1.96  # the standard normal's 97.5% quantile: +- Z95 SE holds about 95%
SMALL_SPLIT = 200  # fewer examples than this: an error's interval is too rough to rank by
SPLIT_NAMES = {"train": "train", "train_dev": "train-dev", "dev": "dev", "test": "test"}

GAPS = {  # name -> (label, formula)
    "avoidable_bias": ("avoidable bias", "train - human"),
    "variance": ("variance", "train-dev - train"),
    "data_mismatch": ("data mismatch", "dev - train-dev"),
    "dev_overfitting": ("overfitting to dev", "test - dev"),
}

ACTIONS = {  # the course's remedies for each gap, as far as deepnotes offers them
    "avoidable_bias": [
        "train a bigger network",
        "train longer",
        "use a better optimisation algorithm (momentum, RMSprop, Adam)",
        "search the architecture and hyperparameters (e.g. a CNN or RNN that fits the data)",
    ],
    "variance": [
        "get more training data",
        "data augmentation, for image runs: --augment crop,flip (or resized-crop for photos)",
        "L2 regularisation: --weight-decay LAMBDA",
        "early stopping: --early-stop PATIENCE (the best dev epoch is the one kept)",
        "a smaller network (--model)",
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
    """Errors per split, the gaps between them, the largest gap and the actions for it; with the
    splits' sizes, each gap's approximate 95% interval and whether the ranking is uncertain."""

    errors: dict  # split -> error (1 - accuracy), in the order train, train_dev, dev, test
    human_error: float
    gaps: dict  # gap name -> value; data_mismatch only with a train-dev split
    largest: str
    actions: list[str]
    notes: list[str] = field(default_factory=list)
    sizes: dict = field(default_factory=dict)  # split -> examples the error is measured on
    intervals: dict = field(default_factory=dict)  # gap name -> (low, high); with sizes only
    uncertain: bool = False  # the largest gap may not be the largest (see the notes)

    def formula(self, gap: str) -> str:
        """The gap's formula as computed here (variance without train-dev: dev - train)."""
        if gap == "variance" and "train_dev" not in self.errors:
            return "dev - train"
        return GAPS[gap][1]

    def to_dict(self) -> dict:
        return {"errors": self.errors, "human_error": self.human_error, "gaps": self.gaps,
                "largest": self.largest, "actions": self.actions, "notes": self.notes,
                "sizes": self.sizes, "intervals": {k: list(v) for k, v in self.intervals.items()},
                "uncertain": self.uncertain}


def diagnose(errors: dict, human_error: float = 0.0, sizes: dict | None = None) -> Diagnosis:
    """The gaps of the course from errors per split (``train``, ``dev``, ``test``; ``train_dev``
    optional), each a fraction in [0, 1], and human error as a proxy for Bayes error:

    avoidable bias = train - human; variance = train-dev - train (dev - train without train-dev);
    data mismatch = dev - train-dev (only with train-dev); overfitting to dev = test - dev.

    ``sizes`` (split -> examples, for every split of ``errors``) add each gap's approximate 95%
    interval and a note when the ranking of the two largest gaps is uncertain.
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
    d = Diagnosis(e, float(human_error), gaps, largest, list(ACTIONS[largest]), notes)
    if sizes is not None:
        d.sizes = check_sizes(sizes, e)
        d.intervals = {g: gap_interval(v, e, d.sizes, gap_splits(g, e)) for g, v in gaps.items()}
        why = ranking_doubt(d)
        if why:
            d.uncertain = True
            notes.append(why)
    return d


def gap_splits(gap: str, errors: dict) -> tuple[str, ...]:
    """The splits whose errors make ``gap`` (the first minus the second)."""
    if gap == "variance":
        return ("train_dev" if "train_dev" in errors else "dev", "train")
    return {"avoidable_bias": ("train",), "data_mismatch": ("dev", "train_dev"),
            "dev_overfitting": ("test", "dev")}[gap]


def standard_error(p: float, n: int) -> float:
    """The binomial standard error of an error rate p measured on n examples: sqrt(p(1-p)/n)."""
    return math.sqrt(p * (1 - p) / n)


def gap_se(errors: dict, sizes: dict, splits: tuple[str, ...]) -> float:
    """The standard error of a gap made of the errors of ``splits``, independent estimates:
    sqrt(sum over the splits of p(1-p)/n) (avoidable bias has one split: human error is given,
    not estimated)."""
    return math.sqrt(sum(standard_error(errors[s], sizes[s]) ** 2 for s in splits))


def gap_interval(gap: float, errors: dict, sizes: dict, splits: tuple[str, ...],
                 z: float = Z95) -> tuple[float, float]:
    """The approximate 95% interval gap +- z SE of a gap made of the errors of ``splits``."""
    se = gap_se(errors, sizes, splits)
    return gap - z * se, gap + z * se


def ranking_doubt(d: Diagnosis) -> str | None:
    """Why the largest gap may not be the largest, and how many examples would tell: its
    interval overlaps the second gap's, or one of their splits is under :data:`SMALL_SPLIT`
    examples. None when the ranking is clear (or there is one gap)."""
    ranked = sorted(d.gaps, key=lambda g: -d.gaps[g])  # stable: the course's order among equals
    if len(ranked) < 2:
        return None
    first, second = ranked[:2]
    splits = list(dict.fromkeys(gap_splits(first, d.errors) + gap_splits(second, d.errors)))
    overlap = d.intervals[first][0] <= d.intervals[second][1]
    small = [s for s in splits if d.sizes[s] < SMALL_SPLIT]
    if not overlap and not small:
        return None
    shown = [f"{GAPS[g][0]} {d.gaps[g]:.4f} (95% interval {d.intervals[g][0]:.4f} to "
             f"{d.intervals[g][1]:.4f})" for g in (first, second)]
    why = [f"{' and '.join(shown)} {'overlap' if overlap else 'do not overlap'}"]
    why += [f"{SPLIT_NAMES[s]} has only {d.sizes[s]} examples" for s in small]
    n = examples_to_separate(d, first, second, splits)
    if n is None:
        settle = "the two gaps are equal: no number of examples ranks them"
    else:
        grow = [SPLIT_NAMES[s] for s in splits if d.sizes[s] < n] or \
            [SPLIT_NAMES[s] for s in splits]  # (none only by a rounding error at the edge)
        settle = (f"about {n:,} examples in {' and in '.join(grow)}, with the errors as they "
                  "are, would make it clear")
    return f"the ranking of the gaps is uncertain: {'; '.join(why)}; {settle}"


def examples_to_separate(d: Diagnosis, first: str, second: str, splits: list[str],
                         z: float = Z95) -> int | None:
    """The least n (at least :data:`SMALL_SPLIT`, rounded up to two significant digits) such
    that, with every split of ``splits`` smaller than n grown to n and its error unchanged, the
    intervals of gaps ``first`` and ``second`` no longer overlap: first - z SE_1 > second +
    z SE_2. None when the gaps are equal."""
    apart = d.gaps[first] - d.gaps[second]
    if apart <= 0:
        return None

    def separated(n: int) -> bool:
        sizes = {s: max(d.sizes[s], n) for s in splits}
        return apart > z * (gap_se(d.errors, sizes, gap_splits(first, d.errors)) +
                            gap_se(d.errors, sizes, gap_splits(second, d.errors)))

    low, high = SMALL_SPLIT, SMALL_SPLIT
    while not separated(high):  # SE shrinks as 1/sqrt(n): doubling finds a bound
        low, high = high, 2 * high
    while low < high:  # the least n that separates them
        mid = (low + high) // 2
        low, high = (mid + 1, high) if not separated(mid) else (low, mid)
    return _round_up(high)


def _round_up(n: int) -> int:
    """n rounded up to two significant digits (1,234 -> 1,300)."""
    step = 10 ** max(0, len(str(n)) - 2)
    return -(-n // step) * step


def check_sizes(sizes: dict, errors: dict) -> dict:
    """``sizes`` of every split of ``errors``: whole numbers of examples >= 1."""
    out = {}
    for name in errors:
        n = sizes.get(name)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise DeepnotesError(f"size of the {name} split {n!r}: expected a number of "
                                 "examples >= 1")
        out[name] = n
    return out


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


def sizes_from_metrics(metrics: dict) -> dict | None:
    """The examples each split's accuracy is measured on: the sum of its classes' support (the
    labels present, for several binary tasks; the tokens, for sequence tasks); None when a
    split does not say."""
    out = {}
    for name in (s for s in SPLIT_ORDER if s in metrics):
        rows = metrics[name].get("per_class") if isinstance(metrics[name], dict) else None
        support = [row.get("support") if isinstance(row, dict) else None for row in rows or []]
        counts = [n for n in support if isinstance(n, int) and n >= 0]
        if not support or len(counts) < len(support):
            return None
        out[name] = sum(counts)
    return out if all(out.values()) else None


def run_errors(run_dir: str | Path) -> dict:
    """Errors per split of a run folder, read from its metrics.json."""
    return errors_from_metrics(*_run_metrics(run_dir))


def _run_metrics(run_dir: str | Path) -> tuple[dict, str]:
    """A run folder's metrics.json object and its path."""
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
    return metrics, str(path)


def diagnose_run(run_dir: str | Path, human_error: float = 0.0) -> Diagnosis:
    """:func:`diagnose` on the errors of a run folder's metrics.json, with the intervals of the
    splits' sizes there (a note says when it has none)."""
    metrics, path = _run_metrics(run_dir)
    errors = errors_from_metrics(metrics, path)
    sizes = sizes_from_metrics(metrics)
    d = diagnose(errors, human_error, sizes)
    if sizes is None:
        d.notes.append(f"{path} gives no split sizes (per_class support): the gaps have no "
                       "intervals, and their ranking may be noise")
    return d


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
