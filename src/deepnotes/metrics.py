"""Classification metrics computed from the confusion matrix.

Notation follows the course notes. For class ``k`` (one-vs-rest), with ``C`` the confusion
matrix (rows = true class, columns = predicted class, as in scikit-learn):

* ``TP_k = C[k, k]``, ``FP_k = sum_i C[i, k] - TP_k``, ``FN_k = sum_j C[k, j] - TP_k``
* precision ``P = TP / (TP + FP)``, recall ``R = TP / (TP + FN)``
* ``F1 = 2 / (1/P + 1/R) = 2PR / (P + R)``, the harmonic mean of P and R.

Undefined ratios are 0: a class never predicted has ``P = 0/0 := 0``, a class never present has
``R = 0/0 := 0`` and ``F1 := 0`` when ``P + R = 0``. This is scikit-learn's ``zero_division=0``.
F1 is computed as ``2TP / (2TP + FP + FN)``, which is algebraically the same quantity as
``2PR / (P + R)`` (and is 0 exactly when ``P + R = 0``); it is the form scikit-learn uses, so
results agree with it to float rounding.

Labels may be numpy arrays, lists or torch tensors of integer class indices ``0 .. K-1``.
"""

from __future__ import annotations

import numpy as np
import torch

from deepnotes.errors import DeepnotesError

AVERAGES = ("macro", "micro", "weighted", "binary", None)


def _as_labels(y, name: str) -> np.ndarray:
    """Return ``y`` as a 1-D int64 numpy array, or raise :class:`DeepnotesError`."""
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    arr = np.asarray(y)
    if arr.size == 0:
        arr = arr.astype(np.int64)
    if arr.ndim != 1:
        raise DeepnotesError(f"{name} must be 1-D, got shape {tuple(arr.shape)}")
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
        raise DeepnotesError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    """Convert and check both label arrays: equal length, no negative labels."""
    yt, yp = _as_labels(y_true, "y_true"), _as_labels(y_pred, "y_pred")
    if len(yt) != len(yp):
        raise DeepnotesError(f"y_true and y_pred differ in length: {len(yt)} vs {len(yp)}")
    for name, arr in (("y_true", yt), ("y_pred", yp)):
        if arr.size and arr.min() < 0:
            raise DeepnotesError(f"{name} has a negative label {arr.min()}")
    return yt, yp


def _num_classes(yt: np.ndarray, yp: np.ndarray, num_classes: int | None) -> int:
    """``num_classes`` if given (checked against the labels), else max label + 1."""
    top = int(max(yt.max(initial=-1), yp.max(initial=-1)))
    if num_classes is None:
        return top + 1
    if int(num_classes) < 1:
        raise DeepnotesError(f"num_classes must be >= 1, got {num_classes}")
    if top >= num_classes:
        raise DeepnotesError(f"label {top} is out of range for num_classes={num_classes}")
    return int(num_classes)


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """(K, K) int64 matrix ``C`` with ``C[i, j]`` = #examples of true class i predicted as j.

    ``K = num_classes``, by default the largest label + 1. Counted with one ``np.bincount`` over
    ``true * K + pred``.
    """
    yt, yp = _pair(y_true, y_pred)
    k = _num_classes(yt, yp, num_classes)
    counts = np.bincount(yt * k + yp, minlength=k * k)
    return counts.reshape(k, k).astype(np.int64)


def accuracy(y_true, y_pred) -> float:
    """Fraction of examples with ``y_pred == y_true``; undefined (an error) for zero examples."""
    yt, yp = _pair(y_true, y_pred)
    if yt.size == 0:
        raise DeepnotesError("accuracy of zero examples is undefined")
    return float(np.mean(yt == yp))


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Elementwise ``num / den`` with ``x / 0 := 0``."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def _prf(tp, fp, fn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P = TP/(TP+FP), R = TP/(TP+FN), F1 = 2TP/(2TP+FP+FN) (= 2PR/(P+R)); 0/0 := 0."""
    return _safe_div(tp, tp + fp), _safe_div(tp, tp + fn), _safe_div(2 * tp, 2 * tp + fp + fn)


def _counts(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class (TP, FP, FN) from the confusion matrix."""
    tp = np.diag(cm)
    return tp, cm.sum(axis=0) - tp, cm.sum(axis=1) - tp


def _average(cm: np.ndarray, average: str | None, pos_label: int,
             present: np.ndarray | None = None):
    """Precision, recall, F1 from ``cm`` under one averaging mode (already validated); the macro
    mean is over the classes ``present`` (None: all K)."""
    tp, fp, fn = _counts(cm)
    if average == "micro":
        return tuple(float(v) for v in _prf(tp.sum(), fp.sum(), fn.sum()))
    scores = _prf(tp, fp, fn)
    if average is None:
        return scores
    if average == "binary":
        return tuple(float(s[pos_label]) for s in scores)
    if average == "macro":
        classes = slice(None) if present is None else present
        return tuple(float(s[classes].mean()) if s[classes].size else 0.0 for s in scores)
    support = cm.sum(axis=1)
    if support.sum() == 0:
        return 0.0, 0.0, 0.0
    return tuple(float(np.average(s, weights=support)) for s in scores)


def _binary_classes(k: int, pos_label: int) -> int:
    """Check a binary problem (at most 2 classes, ``pos_label`` in {0, 1}); return K = 2."""
    if k > 2:
        raise DeepnotesError(f"average='binary' needs at most 2 classes, got {k}")
    if pos_label not in (0, 1):
        raise DeepnotesError(f"pos_label must be 0 or 1 for average='binary', got {pos_label}")
    return 2


def precision_recall_f1(
    y_true, y_pred, average: str | None = "macro", num_classes: int | None = None, pos_label=1
):
    """Return (precision, recall, F1): floats, or per-class float arrays when ``average=None``.

    Per class: P = TP/(TP+FP), R = TP/(TP+FN), F1 = 2/(1/P + 1/R), with 0/0 := 0 and
    F1 := 0 when P + R = 0 (scikit-learn's ``zero_division=0``).

    * ``"macro"``: unweighted mean over the classes. With ``num_classes`` given, over all K of
      them (a class absent from both arrays counts, scoring 0); without it, over the labels
      present in either array, as scikit-learn averages.
    * ``"micro"``: the formulas on TP, FP, FN summed over classes.
    * ``"weighted"``: mean weighted by support (true count); 0 if the total support is 0.
    * ``"binary"``: the ``pos_label`` class only; needs at most 2 classes.
    * ``None``: the per-class arrays, length K (index k is class k; an absent class scores 0).
    """
    if average not in AVERAGES:
        raise DeepnotesError(f"average must be one of {AVERAGES}, got {average!r}")
    yt, yp = _pair(y_true, y_pred)
    k = _num_classes(yt, yp, num_classes)
    if average == "binary":
        k = _binary_classes(k, pos_label)
    present = None if num_classes is not None else np.union1d(yt, yp)
    return _average(confusion_matrix(yt, yp, k), average, pos_label, present)


def _class_names(k: int, class_names) -> list:
    """``class_names`` as a list of length K, or the class indices when not given."""
    if class_names is None:
        return list(range(k))
    names = list(class_names)
    if len(names) != k:
        raise DeepnotesError(f"class_names has {len(names)} entries but there are {k} classes")
    return names


def classification_report(y_true, y_pred, num_classes: int | None = None, class_names=None) -> dict:
    """All metrics as a JSON-serialisable dict of plain Python numbers.

    Keys: ``accuracy``; ``precision``, ``recall``, ``f1`` (macro); ``f1_micro``; ``f1_weighted``;
    ``per_class`` (a list of ``{"class", "precision", "recall", "f1", "support"}``, where
    ``class`` is the name from ``class_names`` or the class index); ``confusion_matrix``
    (nested lists, rows = true class).
    """
    yt, yp = _pair(y_true, y_pred)
    cm = confusion_matrix(yt, yp, _num_classes(yt, yp, num_classes))
    names = _class_names(cm.shape[0], class_names)
    macro = _average(cm, "macro", 1)
    per_p, per_r, per_f = _average(cm, None, 1)
    per_class = [
        {"class": n, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for n, p, r, f, s in zip(names, per_p, per_r, per_f, cm.sum(axis=1))
    ]
    return {
        "accuracy": accuracy(yt, yp),
        "precision": macro[0],
        "recall": macro[1],
        "f1": macro[2],
        "f1_micro": _average(cm, "micro", 1)[2],
        "f1_weighted": _average(cm, "weighted", 1)[2],
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
    }
