"""Evaluation metrics against expectations worked out by hand on small fixed predictions."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from components.evaluate.metrics import (
    classification_metrics,
    downsample_curve,
    expected_calibration_error,
    finite_thresholds,
    most_confused_pairs,
    scalar_metrics,
    top_k_accuracy,
)

CLASSES = ["cat", "dog", "fox"]
# Six images, two per class. Predicted: cat, dog, dog, fox, fox, dog -> 3 of 6 right.
LABELS = np.array([0, 0, 1, 1, 2, 2])
PROBABILITIES = np.array(
    [
        [0.75, 0.15, 0.10],  # cat -> cat   right, confidence 0.75
        [0.20, 0.55, 0.25],  # cat -> dog   wrong, 0.55
        [0.10, 0.85, 0.05],  # dog -> dog   right, 0.85
        [0.10, 0.28, 0.62],  # dog -> fox   wrong, 0.62
        [0.05, 0.05, 0.90],  # fox -> fox   right, 0.90
        [0.30, 0.62, 0.08],  # fox -> dog   wrong, 0.62
    ]
)


@pytest.fixture(scope="module")
def result() -> dict:
    return classification_metrics(LABELS, PROBABILITIES, CLASSES)


def test_confusion_matrix_rows_are_true_classes(result):
    assert result["confusion_matrix"] == [[1, 1, 0], [0, 1, 1], [0, 1, 1]]


def test_accuracy_and_per_class(result):
    assert result["accuracy"] == pytest.approx(3 / 6)
    per_class = result["per_class"]
    # precision: cat predicted once (right); dog three times (one right); fox twice (one right)
    assert per_class["cat"]["precision"] == pytest.approx(1.0)
    assert per_class["dog"]["precision"] == pytest.approx(1 / 3)
    assert per_class["fox"]["precision"] == pytest.approx(1 / 2)
    for name in CLASSES:
        assert per_class[name]["recall"] == pytest.approx(1 / 2)
        assert per_class[name]["support"] == 2
    assert per_class["cat"]["f1"] == pytest.approx(2 / 3)  # 2 * 1 * 0.5 / 1.5
    assert per_class["dog"]["f1"] == pytest.approx(2 / 5)  # 2 * (1/3)(1/2) / (5/6)
    assert per_class["fox"]["f1"] == pytest.approx(1 / 2)


def test_macro_weighted_balanced(result):
    assert result["macro_precision"] == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)
    assert result["macro_recall"] == pytest.approx(1 / 2)
    assert result["macro_f1"] == pytest.approx((2 / 3 + 2 / 5 + 1 / 2) / 3)
    # equal supports: weighted averages equal the macro ones
    assert result["weighted_precision"] == pytest.approx(result["macro_precision"])
    assert result["weighted_f1"] == pytest.approx(result["macro_f1"])
    assert result["weighted_recall"] == pytest.approx(result["accuracy"])
    assert result["balanced_accuracy"] == pytest.approx(1 / 2)


def test_log_loss_is_mean_negative_log_of_true_class(result):
    true_class = [0.75, 0.20, 0.85, 0.28, 0.90, 0.08]
    assert result["log_loss"] == pytest.approx(-sum(math.log(p) for p in true_class) / 6)


def test_ece_by_hand(result):
    # 15 bins of width 1/15. Occupied: 0.55 -> (8/15, 9/15] wrong; 0.62, 0.62 -> (9/15, 10/15]
    # both wrong; 0.75 -> (11/15, 12/15] right; 0.85 -> (12/15, 13/15] right; 0.90 ->
    # (13/15, 14/15] right. ECE = sum |bin| / n * |accuracy - mean confidence|.
    expected = (1 * 0.55 + 2 * 0.62 + 1 * 0.25 + 1 * 0.15 + 1 * 0.10) / 6
    assert result["ece"] == pytest.approx(expected)
    assert result["calibration"]["count"][9] == 2
    assert result["calibration"]["accuracy"][9] == 0.0
    assert result["calibration"]["confidence"][9] == pytest.approx(0.62)
    assert result["calibration"]["accuracy"][0] is None  # empty bin
    assert sum(result["calibration"]["count"]) == 6


def test_ece_averages_within_a_bin_before_taking_the_gap():
    # 0.70 (right) and 0.72 (wrong) share the bin (10/15, 11/15]: accuracy 0.5, confidence 0.71
    labels = np.array([0, 1])
    probabilities = np.array([[0.70, 0.30], [0.72, 0.28]])
    assert expected_calibration_error(labels, probabilities) == pytest.approx(0.21)


def test_ece_bins_are_closed_on_the_right():
    edges = np.linspace(0, 1, 16)
    # a confidence exactly on an edge belongs to the bin below it
    probabilities = np.array([[edges[8], 1 - edges[8]]])
    one_bin = classification_metrics(np.array([0]), probabilities, ["a", "b"])["calibration"]
    assert one_bin["count"][7] == 1


def test_perfectly_confident_and_right_has_zero_ece():
    probabilities = np.eye(3)
    assert expected_calibration_error(np.arange(3), probabilities) == pytest.approx(0.0)


def test_most_confused_pairs_order_share_and_reverse():
    matrix = np.array(
        [
            [5, 3, 0, 1],
            [1, 6, 0, 0],
            [0, 3, 4, 0],
            [1, 0, 2, 7],
        ]
    )
    pairs = most_confused_pairs(matrix, ["a", "b", "c", "d"], top=4)
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == [
        ("a", "b", 3),  # ties on count: lower true index first
        ("c", "b", 3),
        ("d", "c", 2),
        ("a", "d", 1),
    ]
    assert pairs[0]["share"] == pytest.approx(3 / 9)
    assert pairs[1]["share"] == pytest.approx(3 / 7)
    assert pairs[0]["reverse_count"] == 1  # b -> a
    assert pairs[1]["reverse_count"] == 0  # b -> c


def test_most_confused_pairs_empty_when_all_right():
    assert most_confused_pairs(np.diag([3, 4]), ["a", "b"]) == []


def test_binary_roc_and_pr_auc_by_hand():
    # scores of the positive class: negatives 0.1, 0.4; positives 0.35, 0.8.
    # ROC AUC: of the 4 (positive, negative) pairs, 3 rank the positive higher -> 0.75.
    # Average precision: recall 0.5 at precision 1 (0.8), recall 1 at precision 2/3 (0.35).
    labels = np.array([0, 0, 1, 1])
    positive = np.array([0.1, 0.4, 0.35, 0.8])
    probabilities = np.stack([1 - positive, positive], axis=1)
    result = classification_metrics(labels, probabilities, ["negative", "positive"])
    assert result["roc_auc"] == pytest.approx(0.75)
    assert result["pr_auc"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert result["accuracy"] == pytest.approx(3 / 4)
    roc = result["roc_curve"]
    assert roc["fpr"][0] == 0 and roc["tpr"][0] == 0 and roc["fpr"][-1] == 1 and roc["tpr"][-1] == 1
    assert roc["thresholds"][0] == 1.0  # scikit-learn's +inf, made JSON-safe
    assert all(math.isfinite(t) for t in roc["thresholds"])
    json.dumps(result, allow_nan=False)  # the whole result is valid JSON


def test_binary_curves_skipped_when_one_class_is_missing():
    result = classification_metrics(
        np.array([1, 1]), np.array([[0.2, 0.8], [0.6, 0.4]]), ["n", "p"]
    )
    assert "roc_auc" not in result and "roc_curve" not in result
    json.dumps(result, allow_nan=False)


def test_finite_thresholds():
    assert finite_thresholds(np.array([np.inf, 0.8, 0.3, -np.inf, np.nan])) == [
        1.0,
        0.8,
        0.3,
        0.0,
        0.0,
    ]


def test_downsample_curve_keeps_ends():
    curve = {"fpr": list(range(1000)), "tpr": list(range(1000))}
    small = downsample_curve(curve, max_points=50)
    assert len(small["fpr"]) == 50 and small["fpr"][0] == 0 and small["fpr"][-1] == 999
    assert downsample_curve({"x": [1, 2]}, 50) == {"x": [1, 2]}


def test_top5_only_above_ten_classes():
    assert "top5_accuracy" not in classification_metrics(LABELS, PROBABILITIES, CLASSES)
    classes = [f"c{i}" for i in range(12)]
    probabilities = np.tile(np.linspace(0.12, 0.01, 12), (3, 1))  # class 0 most probable
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    labels = np.array([0, 4, 5])  # true class ranked 1st, 5th and 6th
    result = classification_metrics(labels, probabilities, classes)
    assert result["top5_accuracy"] == pytest.approx(2 / 3)
    assert top_k_accuracy(labels, probabilities, 1) == pytest.approx(1 / 3)


def test_agrees_with_scikit_learn_on_random_predictions():
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 15, 400)
    probabilities = rng.dirichlet(np.ones(15) * 0.3, 400)
    result = classification_metrics(labels, probabilities, [str(i) for i in range(15)])
    predicted = probabilities.argmax(axis=1)
    assert result["balanced_accuracy"] == pytest.approx(
        skm.balanced_accuracy_score(labels, predicted)
    )
    assert result["log_loss"] == pytest.approx(
        skm.log_loss(labels, probabilities, labels=range(15))
    )
    assert result["top5_accuracy"] == pytest.approx(
        skm.top_k_accuracy_score(labels, probabilities, k=5, labels=range(15))
    )
    assert result["macro_f1"] == pytest.approx(skm.f1_score(labels, predicted, average="macro"))


def test_scalars_are_plain_floats_in_display_order(result):
    scalars = scalar_metrics(result)
    assert list(scalars)[:2] == ["accuracy", "balanced_accuracy"]
    assert list(scalars)[-2:] == ["log_loss", "ece"]
    assert all(type(v) is float for v in scalars.values())


@pytest.mark.parametrize(
    ("labels", "probabilities", "message"),
    [
        (np.array([0, 1]), np.ones((2, 3)) / 3, "expected \\(2, 2\\)"),
        (np.array([0, 2]), np.ones((2, 2)) / 2, "class indices"),
        (np.array([], dtype=int), np.ones((0, 2)), "empty"),
    ],
)
def test_bad_inputs_say_what_is_wrong(labels, probabilities, message):
    with pytest.raises(ValueError, match=message):
        classification_metrics(labels, probabilities, ["a", "b"])
