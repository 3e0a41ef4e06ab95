"""deepnotes.metrics against scikit-learn on generated inputs, plus its error cases."""

import json

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from deepnotes.errors import DeepnotesError
from deepnotes.metrics import (
    accuracy,
    classification_report,
    confusion_matrix,
    precision_recall_f1,
)

ATOL = 1e-12
SEEDS = (0, 1)  # x 6 kinds x 6 values of K: 72 cases per comparison test
KINDS = ("uniform", "pred_subset", "true_subset", "all_correct", "all_wrong", "tiny")


def make_labels(kind: str, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One (y_true, y_pred) pair of the given kind, labels in range(k), size 1..200."""
    rng = np.random.default_rng(seed * 100 + k)
    n = 1 if kind == "tiny" else int(rng.integers(1, 201))
    y_true = rng.integers(0, k, n)
    y_pred = rng.integers(0, k, n)
    if kind == "pred_subset":  # the top half of the classes is never predicted
        y_pred = rng.integers(0, max(1, k // 2), n)
    elif kind == "true_subset":  # classes 1.. never present in y_true
        y_true = np.zeros(n, dtype=np.int64)
    elif kind == "all_correct":
        y_pred = y_true.copy()
    elif kind == "all_wrong":
        y_pred = (y_true + 1) % k
    return y_true, y_pred


def sk_prf(y_true, y_pred, k, average):
    p, r, f, _ = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(k)), average=average, zero_division=0
    )
    return p, r, f


def assert_prf_equal(ours, expected) -> None:
    for a, b in zip(ours, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=ATOL)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("k", range(2, 8))
def test_confusion_matrix_and_accuracy_match_sklearn(kind, k):
    for seed in SEEDS:
        y_true, y_pred = make_labels(kind, k, seed)
        cm = confusion_matrix(y_true, y_pred, num_classes=k)
        assert cm.shape == (k, k) and cm.dtype == np.int64
        expected = skm.confusion_matrix(y_true, y_pred, labels=list(range(k)))
        np.testing.assert_array_equal(cm, expected)
        assert cm.sum() == len(y_true)
        np.testing.assert_allclose(
            accuracy(y_true, y_pred), skm.accuracy_score(y_true, y_pred), rtol=0, atol=ATOL
        )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("k", range(2, 8))
def test_precision_recall_f1_match_sklearn_every_average(kind, k):
    for seed in SEEDS:
        y_true, y_pred = make_labels(kind, k, seed)
        for average in ("macro", "micro", "weighted", None):
            ours = precision_recall_f1(y_true, y_pred, average=average, num_classes=k)
            assert_prf_equal(ours, sk_prf(y_true, y_pred, k, average))


def test_per_class_arrays_have_length_k_and_absent_classes_score_zero():
    y_true = np.array([0, 0, 1, 1])
    y_pred = np.array([0, 1, 1, 1])
    p, r, f = precision_recall_f1(y_true, y_pred, average=None, num_classes=4)
    assert p.shape == r.shape == f.shape == (4,)
    np.testing.assert_allclose(p, [1.0, 2 / 3, 0.0, 0.0], rtol=0, atol=ATOL)
    np.testing.assert_allclose(r, [0.5, 1.0, 0.0, 0.0], rtol=0, atol=ATOL)
    np.testing.assert_allclose(f, [2 / 3, 0.8, 0.0, 0.0], rtol=0, atol=ATOL)
    macro = precision_recall_f1(y_true, y_pred, average="macro", num_classes=4)
    np.testing.assert_allclose(macro, [(1 + 2 / 3) / 4, 1.5 / 4, (2 / 3 + 0.8) / 4], atol=ATOL)


def test_f1_is_harmonic_mean_of_precision_and_recall():
    y_true, y_pred = make_labels("uniform", 5, 7)
    p, r, f = precision_recall_f1(y_true, y_pred, average=None, num_classes=5)
    ok = (p > 0) & (r > 0)
    assert ok.any()
    np.testing.assert_allclose(f[ok], 2 / (1 / p[ok] + 1 / r[ok]), rtol=0, atol=ATOL)
    np.testing.assert_array_equal(f[~ok], 0.0)


def test_default_num_classes_is_max_label_plus_one():
    y_true, y_pred = [0, 2, 2, 1], [0, 2, 1, 1]
    assert confusion_matrix(y_true, y_pred).shape == (3, 3)
    assert confusion_matrix([0, 1], [0, 4]).shape == (5, 5)
    assert_prf_equal(precision_recall_f1(y_true, y_pred), sk_prf(y_true, y_pred, 3, "macro"))


@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
def test_without_num_classes_the_labels_present_are_averaged_as_scikit_learn_does(average):
    """Random pairs with gaps in the labels (a class below the largest absent from both arrays):
    sklearn, given no labels, averages over those present in either."""
    rng = np.random.default_rng(7)
    gaps = 0
    for _ in range(400):
        k = int(rng.integers(2, 9))
        used = rng.choice(k, size=int(rng.integers(1, k + 1)), replace=False)
        n = int(rng.integers(1, 30))
        y_true, y_pred = rng.choice(used, n), rng.choice(used, n)
        present = np.union1d(y_true, y_pred)
        gaps += len(present) < present.max() + 1
        expected = skm.precision_recall_fscore_support(y_true, y_pred, average=average,
                                                       zero_division=0)[:3]
        assert_prf_equal(precision_recall_f1(y_true, y_pred, average=average), expected)
    assert gaps > 100  # the case that differed before: an absent class below the largest


def test_num_classes_adds_absent_classes_to_macro():
    y_true, y_pred = [0, 1, 1, 0], [0, 1, 0, 0]
    wide = precision_recall_f1(y_true, y_pred, average="macro", num_classes=6)
    narrow = precision_recall_f1(y_true, y_pred, average="macro")
    assert_prf_equal(wide, sk_prf(y_true, y_pred, 6, "macro"))
    np.testing.assert_allclose(wide, np.array(narrow) * 2 / 6, rtol=0, atol=ATOL)


@pytest.mark.parametrize("pos_label", (0, 1))
@pytest.mark.parametrize("kind", KINDS)
def test_binary_matches_sklearn(kind, pos_label):
    for seed in SEEDS:
        y_true, y_pred = make_labels(kind, 2, seed)
        ours = precision_recall_f1(y_true, y_pred, average="binary", pos_label=pos_label)
        p, r, f, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, average="binary", pos_label=pos_label, zero_division=0
        )
        assert all(isinstance(v, float) for v in ours)
        assert_prf_equal(ours, (p, r, f))


def test_binary_with_only_one_class_present_reports_zero_for_absent_positive():
    ours = precision_recall_f1([0, 0, 0], [0, 0, 0], average="binary", pos_label=1)
    np.testing.assert_allclose(ours, [0.0, 0.0, 0.0], rtol=0, atol=ATOL)


def test_averaged_results_are_python_floats_and_per_class_are_arrays():
    y_true, y_pred = make_labels("uniform", 3, 0)
    for average in ("macro", "micro", "weighted"):
        assert all(type(v) is float for v in precision_recall_f1(y_true, y_pred, average))
    assert all(isinstance(v, np.ndarray) for v in precision_recall_f1(y_true, y_pred, None))


def test_micro_equals_accuracy_for_single_label_multiclass():
    y_true, y_pred = make_labels("uniform", 6, 3)
    micro = precision_recall_f1(y_true, y_pred, average="micro", num_classes=6)
    np.testing.assert_allclose(micro, [accuracy(y_true, y_pred)] * 3, rtol=0, atol=ATOL)


def test_weighted_with_zero_total_support_is_zero():
    ours = precision_recall_f1([], [], average="weighted", num_classes=3)
    np.testing.assert_allclose(ours, [0.0, 0.0, 0.0], rtol=0, atol=0)


@pytest.mark.parametrize("convert", [torch.tensor, list, np.asarray], ids=["torch", "list", "np"])
def test_torch_list_and_numpy_inputs_agree(convert):
    y_true, y_pred = make_labels("uniform", 4, 5)
    yt, yp = convert(y_true.tolist()), convert(y_pred.tolist())
    np.testing.assert_array_equal(
        confusion_matrix(yt, yp, 4), skm.confusion_matrix(y_true, y_pred, labels=range(4))
    )
    np.testing.assert_allclose(accuracy(yt, yp), skm.accuracy_score(y_true, y_pred), atol=ATOL)
    for average in ("macro", "micro", "weighted", None):
        ours = precision_recall_f1(yt, yp, average=average, num_classes=4)
        assert_prf_equal(ours, sk_prf(y_true, y_pred, 4, average))


def test_torch_int32_tensor_and_argmax_output():
    logits = torch.tensor([[2.0, 0.1, 0.3], [0.1, 3.0, 0.2], [0.0, 0.1, 0.9], [1.0, 0.0, 0.2]])
    y_true = torch.tensor([0, 1, 1, 2], dtype=torch.int32)
    cm = confusion_matrix(y_true, logits.argmax(dim=1), num_classes=3)
    np.testing.assert_array_equal(cm, [[1, 0, 0], [0, 1, 1], [1, 0, 0]])
    np.testing.assert_allclose(accuracy(y_true, logits.argmax(dim=1)), 0.5, rtol=0, atol=ATOL)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "num_classes", "match"),
    [
        ([0, 1, 1], [0, 1], None, "length"),
        ([0, -1], [0, 1], None, "negative"),
        ([0, 1], [0, -2], None, "negative"),
        ([0, 3], [0, 1], 3, "out of range"),
        ([0, 1], [0, 5], 3, "out of range"),
        ([0.0, 1.0], [0, 1], None, "integer"),
        ([[0, 1]], [[0, 1]], None, "1-D"),
    ],
)
def test_confusion_matrix_errors(y_true, y_pred, num_classes, match):
    with pytest.raises(DeepnotesError, match=match):
        confusion_matrix(y_true, y_pred, num_classes=num_classes)


def test_errors_are_value_errors_with_one_line_messages():
    with pytest.raises(ValueError) as info:
        precision_recall_f1([0, 1], [0], average="macro")
    assert "\n" not in str(info.value)


def test_accuracy_errors():
    with pytest.raises(DeepnotesError, match="length"):
        accuracy([0, 1], [0, 1, 1])
    with pytest.raises(DeepnotesError, match="zero examples"):
        accuracy([], [])


@pytest.mark.parametrize("average", ["samples", "Macro", "", 1])
def test_bad_average_lists_valid_values(average):
    with pytest.raises(DeepnotesError, match="macro.*micro.*weighted.*binary.*None"):
        precision_recall_f1([0, 1], [0, 1], average=average)


def test_binary_with_three_classes_raises():
    with pytest.raises(DeepnotesError, match="at most 2 classes"):
        precision_recall_f1([0, 1, 2], [0, 1, 1], average="binary")
    with pytest.raises(DeepnotesError, match="at most 2 classes"):
        precision_recall_f1([0, 1], [0, 1], average="binary", num_classes=3)
    with pytest.raises(DeepnotesError, match="pos_label"):
        precision_recall_f1([0, 1], [0, 1], average="binary", pos_label=2)


def test_precision_recall_f1_out_of_range_label_raises():
    with pytest.raises(DeepnotesError, match="out of range"):
        precision_recall_f1([0, 4], [0, 1], num_classes=3)


def test_classification_report_is_json_and_matches_functions():
    y_true, y_pred = make_labels("pred_subset", 5, 1)
    names = ["a", "b", "c", "d", "e"]
    report = classification_report(torch.tensor(y_true), y_pred.tolist(), 5, class_names=names)
    assert json.loads(json.dumps(report)) == report
    macro = precision_recall_f1(y_true, y_pred, "macro", num_classes=5)
    np.testing.assert_allclose(
        [report["precision"], report["recall"], report["f1"]], macro, rtol=0, atol=ATOL
    )
    np.testing.assert_allclose(report["accuracy"], accuracy(y_true, y_pred), rtol=0, atol=ATOL)
    f1_micro = precision_recall_f1(y_true, y_pred, "micro", num_classes=5)[2]
    f1_weighted = precision_recall_f1(y_true, y_pred, "weighted", num_classes=5)[2]
    np.testing.assert_allclose(report["f1_micro"], f1_micro, rtol=0, atol=ATOL)
    np.testing.assert_allclose(report["f1_weighted"], f1_weighted, rtol=0, atol=ATOL)
    cm = confusion_matrix(y_true, y_pred, 5)
    assert report["confusion_matrix"] == cm.tolist()
    per_p, per_r, per_f = precision_recall_f1(y_true, y_pred, None, num_classes=5)
    assert [row["class"] for row in report["per_class"]] == names
    np.testing.assert_allclose([row["precision"] for row in report["per_class"]], per_p, atol=ATOL)
    np.testing.assert_allclose([row["recall"] for row in report["per_class"]], per_r, atol=ATOL)
    np.testing.assert_allclose([row["f1"] for row in report["per_class"]], per_f, atol=ATOL)
    assert [row["support"] for row in report["per_class"]] == cm.sum(axis=1).tolist()


def test_classification_report_types_and_default_names():
    report = classification_report([0, 1, 2, 2], [0, 2, 2, 2])
    assert [row["class"] for row in report["per_class"]] == [0, 1, 2]
    floats = [report[k] for k in ("accuracy", "precision", "recall", "f1", "f1_micro")]
    assert all(type(v) is float for v in floats)
    for row in report["per_class"]:
        assert type(row["support"]) is int and type(row["f1"]) is float
    assert all(type(v) is int for row in report["confusion_matrix"] for v in row)
    np.testing.assert_allclose(report["accuracy"], 0.75, rtol=0, atol=ATOL)


def test_classification_report_rejects_wrong_number_of_names():
    with pytest.raises(DeepnotesError, match="class_names"):
        classification_report([0, 1], [0, 1], class_names=["only one"])
