"""Classification metrics from predictions (scikit-learn does the arithmetic)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as skm


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities)
    predicted = probabilities.argmax(axis=1)
    indices = list(range(len(class_names)))
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        labels, predicted, labels=indices, zero_division=0
    )
    result: dict[str, Any] = {
        "accuracy": float(skm.accuracy_score(labels, predicted)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(labels, predicted)),
        "macro_f1": float(skm.f1_score(labels, predicted, labels=indices, average="macro", zero_division=0)),
        "weighted_f1": float(skm.f1_score(labels, predicted, labels=indices, average="weighted", zero_division=0)),
        "log_loss": float(skm.log_loss(labels, np.clip(probabilities, 1e-7, 1.0), labels=indices)),
        "examples": int(len(labels)),
    }
    if len(class_names) > 10:
        result["top5_accuracy"] = float(skm.top_k_accuracy_score(labels, probabilities, k=5, labels=indices))
    result["per_class"] = {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(class_names, precision, recall, f1, support, strict=True)
    }
    result["confusion_matrix"] = skm.confusion_matrix(labels, predicted, labels=indices).tolist()
    return result


SCALARS = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "log_loss", "top5_accuracy")


def scalar_metrics(result: dict[str, Any]) -> dict[str, float]:
    return {name: float(result[name]) for name in SCALARS if name in result}
