"""Classification metrics from predictions: scalars, per class, confusion, calibration, ROC.

Everything here is plain numpy/scikit-learn on `(labels, probabilities)`, so it is the same for
every framework and testable with hand-made predictions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as skm

from components.spec import ECE_BINS, METRICS, SCALARS, TOP_K

MOST_CONFUSED = 20
# Clip probabilities away from 0 before the log, as scikit-learn does for float64.
LOG_EPSILON = 1e-15


def classification_metrics(
    labels: np.ndarray, probabilities: np.ndarray, class_names: list[str]
) -> dict[str, Any]:
    """Every metric of one evaluation: scalars at the top level, plus `per_class`,
    `confusion_matrix`, `most_confused`, `calibration` and (binary tasks) `roc_curve`/`pr_curve`.

    Binary tasks treat class index 1 as the positive class.
    """
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    n_classes = len(class_names)
    if probabilities.ndim != 2 or probabilities.shape != (len(labels), n_classes):
        raise ValueError(
            f"probabilities have shape {probabilities.shape}; expected ({len(labels)}, {n_classes}) "
            "(one row per label, one column per class)"
        )
    if not len(labels):
        raise ValueError("no predictions to score: the evaluated split is empty")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must be class indices in [0, {n_classes - 1}]")
    predicted = probabilities.argmax(axis=1)
    indices = list(range(n_classes))
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        labels, predicted, labels=indices, zero_division=0
    )
    matrix = skm.confusion_matrix(labels, predicted, labels=indices)
    result: dict[str, Any] = {
        "accuracy": float(np.mean(predicted == labels)),
        "balanced_accuracy": balanced_accuracy(matrix),
        "log_loss": log_loss(labels, probabilities),
        "ece": expected_calibration_error(labels, probabilities),
        "examples": len(labels),
        "num_classes": n_classes,
    }
    for average in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            labels, predicted, labels=indices, average=average, zero_division=0
        )
        result[f"{average}_precision"] = float(p)
        result[f"{average}_recall"] = float(r)
        result[f"{average}_f1"] = float(f)
    if METRICS["top5_accuracy"].applies(n_classes):
        result["top5_accuracy"] = top_k_accuracy(labels, probabilities, TOP_K)
    if METRICS["roc_auc"].applies(n_classes):
        result.update(binary_curves(labels, probabilities[:, 1]))
    result["per_class"] = {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(class_names, precision, recall, f1, support, strict=True)
    }
    result["confusion_matrix"] = matrix.tolist()
    result["most_confused"] = most_confused_pairs(matrix, class_names)
    result["calibration"] = calibration_bins(labels, probabilities)
    return result


def scalar_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The scalar metrics of a `classification_metrics` result, in display order."""
    return {name: float(result[name]) for name in SCALARS if name in result}


def balanced_accuracy(matrix: np.ndarray) -> float:
    """Mean recall over the classes that occur in the labels."""
    matrix = np.asarray(matrix)
    support = matrix.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(matrix)[present] / support[present]))


def log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean negative log probability of the true class."""
    picked = np.asarray(probabilities, dtype=np.float64)[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, LOG_EPSILON, 1.0))))


def top_k_accuracy(labels: np.ndarray, probabilities: np.ndarray, k: int) -> float:
    """Fraction of images whose true class is among the k most probable (a tie with the true
    class counts in its favour)."""
    probabilities = np.asarray(probabilities)
    true = probabilities[np.arange(len(labels)), labels]
    # rank = how many classes score strictly higher than the true one
    higher = (probabilities > true[:, None]).sum(axis=1)
    return float(np.mean(higher < k))


def _bin_index(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Bin m (0-based) holds confidences in (edges[m], edges[m+1]], as in Guo et al. 2017;
    confidence 0 goes into the first bin."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)


def expected_calibration_error(
    labels: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS
) -> float:
    """ECE = sum over equal-width confidence bins of |bin| / n * |accuracy(bin) - confidence(bin)|,
    where confidence is the top probability and accuracy whether the top class is right."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == np.asarray(labels)).astype(np.float64)
    index = _bin_index(confidence, bins)
    total = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            total += members.sum() * abs(correct[members].mean() - confidence[members].mean())
    return float(total / len(confidence))


def calibration_bins(
    labels: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS
) -> dict[str, Any]:
    """Per-bin count, accuracy and mean confidence for the reliability diagram (None: empty bin)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    index = _bin_index(confidence, bins)
    counts, accuracy, mean_confidence = [], [], []
    for b in range(bins):
        members = index == b
        counts.append(int(members.sum()))
        accuracy.append(float(correct[members].mean()) if members.any() else None)
        mean_confidence.append(float(confidence[members].mean()) if members.any() else None)
    return {
        "edges": np.linspace(0.0, 1.0, bins + 1).tolist(),
        "count": counts,
        "accuracy": accuracy,
        "confidence": mean_confidence,
    }


def most_confused_pairs(
    matrix: np.ndarray, class_names: list[str], top: int = MOST_CONFUSED
) -> list[dict[str, Any]]:
    """The largest off-diagonal cells: (true, predicted, count, share of the true class),
    by count, then by true and predicted class index."""
    matrix = np.asarray(matrix)
    support = matrix.sum(axis=1)
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    rows, cols = np.nonzero(off)
    order = sorted(zip(rows.tolist(), cols.tolist(), strict=True), key=lambda rc: (-off[rc], rc))
    return [
        {
            "true": class_names[r],
            "predicted": class_names[c],
            "count": int(off[r, c]),
            "share": float(off[r, c] / support[r]),
            "reverse_count": int(off[c, r]),
        }
        for r, c in order[:top]
    ]


def binary_curves(labels: np.ndarray, positive_scores: np.ndarray) -> dict[str, Any]:
    """ROC AUC, PR AUC (average precision) and both curves; empty if only one class occurs."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return {}
    fpr, tpr, roc_thresholds = skm.roc_curve(labels, positive_scores)
    precision, recall, _ = skm.precision_recall_curve(labels, positive_scores)
    return {
        "roc_auc": float(skm.roc_auc_score(labels, positive_scores)),
        "pr_auc": float(skm.average_precision_score(labels, positive_scores)),
        "roc_curve": {
            "fpr": fpr.tolist(),
            "tpr": tpr.tolist(),
            "thresholds": finite_thresholds(roc_thresholds),
        },
        "pr_curve": {"precision": precision.tolist(), "recall": recall.tolist()},
    }


def finite_thresholds(thresholds: np.ndarray) -> list[float]:
    """scikit-learn starts ROC thresholds at +inf ("nothing is positive"), which is not JSON;
    probabilities never exceed 1, so 1.0 marks the same point."""
    finite = np.nan_to_num(
        np.asarray(thresholds, dtype=np.float64), nan=0.0, posinf=1.0, neginf=0.0
    )
    return finite.clip(0.0, 1.0).tolist()


def downsample_curve(
    curve: dict[str, list[float]], max_points: int = 200
) -> dict[str, list[float]]:
    """At most `max_points` evenly spaced points of a curve, always keeping both ends."""
    length = len(next(iter(curve.values())))
    if length <= max_points:
        return {k: list(v) for k, v in curve.items()}
    keep = np.unique(np.linspace(0, length - 1, max_points).round().astype(int))
    return {k: [v[i] for i in keep] for k, v in curve.items()}
