"""Temperature scaling: C. Guo, G. Pleiss, Y. Sun & K. Q. Weinberger, "On Calibration of Modern
Neural Networks", ICML 2017.

One scalar T, fitted on the validation split by minimising the negative log-likelihood of
softmax(logits / T), divides the logits of the trained model. The top class, and so every
accuracy, stays the same; the probabilities stop being over- or (after label smoothing, R. Mueller,
S. Kornblith & G. Hinton, "When does label smoothing help?", NeurIPS 2019) under-confident. The
keras trainer folds 1/T into the classifier's last dense layer, so the saved, exported and served
Model gives the calibrated probabilities with nothing else to know; the transformers trainer
divides the weight and bias of the checkpoint's classification head by T, so its saved model's
logits are the calibrated ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
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

    def announce(self) -> None:
        """One line in the task's log."""
        print(
            f"calibration: temperature {self.temperature:.3f} on {self.validation_examples} "
            f"validation images: log loss {self.log_loss_before:.4f} -> "
            f"{self.log_loss_after:.4f}, ECE {self.ece_before:.4f} -> {self.ece_after:.4f}",
            flush=True,
        )


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
    clipped = np.clip(np.asarray(probabilities, dtype=np.float64), LOG_EPSILON, 1.0)
    return fit_logits_temperature(np.log(clipped), labels)


def fit_logits_temperature(logits: np.ndarray, labels: np.ndarray) -> Calibration:
    """The temperature T that minimises the validation log loss of softmax(logits / T)."""
    from components.evaluate.metrics import expected_calibration_error

    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        raise ValueError("temperature scaling needs validation images; the split has none")
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


def no_validation_split(name: str) -> ValueError:
    return ValueError(
        f"model '{name}': calibration: temperature is fitted on the validation split and "
        "this Dataset has none; set data.splits.validation above 0"
    )


def calibrate_keras(model: Any, validation: Any, name: str) -> Calibration:
    """Temperature scaling of a keras classifier on its validation batches (tf.data of images
    and labels, one-hot under label smoothing): the kernel and bias of its last dense layer
    divided by the fitted temperature, so its softmax is that of the logits over T."""
    from components.models.keras import CLASSIFIER_LAYER

    if validation is None:
        raise no_validation_split(name)
    probabilities, labels = [], []
    for images, targets in validation:
        probabilities.append(np.asarray(model.predict_on_batch(images), dtype=np.float64))
        targets = np.asarray(targets)
        labels.append(targets.argmax(axis=1) if targets.ndim == 2 else targets)
    fitted = fit_temperature(np.concatenate(probabilities), np.concatenate(labels))
    layer = model.get_layer(CLASSIFIER_LAYER)
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel / fitted.temperature, bias / fitted.temperature])
    fitted.announce()
    return fitted


def calibrate_transformers(
    model: Any,
    batches: Iterable[tuple[Any, Any]] | None,
    logits_of: Callable[[Any], Any],
    name: str,
) -> Calibration:
    """Temperature scaling of a transformers classifier on its validation batches (uint8 image
    tensors and labels; `logits_of` turns images into the model's float logits): the weight and
    bias of its classification head divided by the fitted temperature."""
    import torch

    from components.models.transformers import classifier_head

    if batches is None:
        raise no_validation_split(name)
    head = classifier_head(model)
    logits, labels = [], []
    with torch.inference_mode():
        for images, targets in batches:
            logits.append(logits_of(images).double().cpu().numpy())
            labels.append(targets.numpy())
    fitted = fit_logits_temperature(np.concatenate(logits), np.concatenate(labels))
    with torch.no_grad():
        head.weight.div_(fitted.temperature)
        if head.bias is not None:
            head.bias.div_(fitted.temperature)
    fitted.announce()
    return fitted
