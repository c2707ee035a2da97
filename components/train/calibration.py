"""Temperature scaling: C. Guo, G. Pleiss, Y. Sun & K. Q. Weinberger, "On Calibration of Modern
Neural Networks", ICML 2017.

One scalar T, fitted on the validation split by minimising the negative log-likelihood of
softmax(logits / T), divides the logits of the trained model. The top class, and so every
accuracy, stays the same; the probabilities stop being over- or (after label smoothing, R. Mueller,
S. Kornblith & G. Hinton, "When does label smoothing help?", NeurIPS 2019) under-confident. The
keras trainer folds 1/T into the classifier's last dense layer, so the saved, exported and served
Model gives the calibrated probabilities with nothing else to know.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# log T is searched in [-3, 3]: T from 0.05 to 20 (Guo et al. report 1.1 to 3; label smoothing
# gives values below 1).
LOG_TEMPERATURE_BOUND = 3.0
# Probabilities are clipped away from 0 before the log, as scikit-learn's log_loss does.
LOG_EPSILON = 1e-15


@dataclass(frozen=True)
class Calibration:
    """The fitted temperature and what it did on the validation split."""

    temperature: float
    validation_examples: int
    log_loss_before: float
    log_loss_after: float
    ece_before: float
    ece_after: float

    def record(self) -> dict[str, Any]:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}


def log_loss(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of softmax(logits / temperature) at the true classes."""
    scaled = logits / temperature
    top = scaled.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(scaled - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(log_norm - scaled[np.arange(len(labels)), labels]))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True))


def minimise_on_interval(function: Any, low: float, high: float, tolerance: float = 1e-5) -> float:
    """Golden-section search for the minimum of a unimodal function on [low, high]. The log
    loss is convex in 1/T and so unimodal in log T. (scipy's minimize_scalar does the same;
    scipy is no declared dependency of the step images, only scikit-learn's.)"""
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = low, high
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = function(c), function(d)
    while b - a > tolerance:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = function(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = function(d)
    return (a + b) / 2.0


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> Calibration:
    """The temperature for a model's validation probabilities (their logs are its logits up to a
    constant per image, which the softmax ignores)."""
    from components.evaluate.metrics import expected_calibration_error

    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        raise ValueError("temperature scaling needs validation images; the split has none")
    logits = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), LOG_EPSILON, 1.0))
    log_t = minimise_on_interval(
        lambda value: log_loss(logits, labels, float(np.exp(value))),
        -LOG_TEMPERATURE_BOUND,
        LOG_TEMPERATURE_BOUND,
    )
    temperature = float(np.exp(log_t))
    return Calibration(
        temperature=temperature,
        validation_examples=len(labels),
        log_loss_before=log_loss(logits, labels),
        log_loss_after=log_loss(logits, labels, temperature),
        ece_before=expected_calibration_error(labels, softmax(logits)),
        ece_after=expected_calibration_error(labels, softmax(logits / temperature)),
    )


def calibrate_keras(model: Any, validation: Any, name: str) -> Calibration:
    """Temperature scaling of a keras classifier on its validation batches (tf.data of images
    and labels, one-hot under label smoothing): the kernel and bias of its last dense layer
    divided by the fitted temperature, so its softmax is that of the logits over T."""
    from components.models.keras import CLASSIFIER_LAYER

    if validation is None:
        raise ValueError(
            f"model '{name}': calibration: temperature is fitted on the validation split and "
            "this Dataset has none; set data.splits.validation above 0"
        )
    probabilities, labels = [], []
    for images, targets in validation:
        probabilities.append(np.asarray(model.predict_on_batch(images), dtype=np.float64))
        targets = np.asarray(targets)
        labels.append(targets.argmax(axis=1) if targets.ndim == 2 else targets)
    fitted = fit_temperature(np.concatenate(probabilities), np.concatenate(labels))
    layer = model.get_layer(CLASSIFIER_LAYER)
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel / fitted.temperature, bias / fitted.temperature])
    print(
        f"calibration: temperature {fitted.temperature:.3f} on {fitted.validation_examples} "
        f"validation images: log loss {fitted.log_loss_before:.4f} -> "
        f"{fitted.log_loss_after:.4f}, ECE {fitted.ece_before:.4f} -> {fitted.ece_after:.4f}",
        flush=True,
    )
    return fitted
