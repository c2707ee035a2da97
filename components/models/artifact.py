"""What every loaded Model artifact offers (`Classifier`) and the error a bad folder raises."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from components.common.model_card import ModelCard


class Classifier(Protocol):
    card: ModelCard

    def predict(self, images: np.ndarray) -> np.ndarray:
        """float32 [0, 255] images of the card's input size, NHWC -> (N, classes) probabilities."""
        ...


class ModelLoadError(RuntimeError):
    """The folder is not a loadable Model artifact; the message says what is missing."""
