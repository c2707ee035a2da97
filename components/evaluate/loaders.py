"""One interface over every Model artifact: `load_classifier(dir).predict(images)` -> probabilities."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from components.common.model_card import ModelCard


class Classifier(Protocol):
    card: ModelCard

    def predict(self, images: np.ndarray) -> np.ndarray:
        """float32 [0, 255] images of the card's input size, NHWC -> (N, classes) probabilities."""
        ...


class KerasClassifier:
    def __init__(self, model_dir: Path, card: ModelCard):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras

        self.card = card
        self.model = keras.saving.load_model(model_dir / "keras" / "model.keras", compile=False)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_on_batch(images), dtype=np.float32)


def load_classifier(model_dir: str | Path) -> Classifier:
    model_dir = Path(model_dir)
    card = ModelCard.load(model_dir)
    if card.framework == "keras":
        return KerasClassifier(model_dir, card)
    raise NotImplementedError(f"{model_dir}: loading {card.framework} models is not available in this version")
