"""One interface over every Model artifact: `load_classifier(dir).predict(images)` -> probabilities.

A loader takes the Model folder and its card and returns a `Classifier`. Every classifier takes
the same input, so evaluation and the predict CLI never branch on the framework: float32 pixels
in [0, 255], already decoded and resized to `card.input_size` with `card.channels` channels.
Normalisation is the model's business (keras models carry it as layers; a transformers loader
applies the card's mean/std).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from components.common.model_card import CARD_FILE, ModelCard


class Classifier(Protocol):
    card: ModelCard

    def predict(self, images: np.ndarray) -> np.ndarray:
        """float32 [0, 255] images of the card's input size, NHWC -> (N, classes) probabilities."""
        ...


class ModelLoadError(RuntimeError):
    """The folder is not a loadable Model artifact; the message says what is missing."""


class KerasClassifier:
    def __init__(self, model_dir: Path, card: ModelCard):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        path = model_dir / "keras" / "model.keras"
        if not path.is_file():
            raise ModelLoadError(
                f"{path} is missing: a keras Model artifact holds keras/model.keras beside "
                f"{CARD_FILE}; point at the folder the train step wrote"
            )
        import keras

        self.card = card
        try:
            self.model = keras.saving.load_model(path, compile=False)
        except Exception as exc:  # keras reports a file that is no zip as "File not found"
            import zipfile

            why = (
                f"{type(exc).__name__}: {str(exc)[:200]}"
                if zipfile.is_zipfile(path)
                else "not a .keras zip archive"
            )
            raise ModelLoadError(
                f"{path} is not a valid Keras model file ({why}); it is damaged or was not "
                "written by model.save(): copy the Model artifact from the train step again"
            ) from None

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_on_batch(images), dtype=np.float32)


def _transformers_classifier(model_dir: Path, card: ModelCard) -> Classifier:
    from components.train.hf_model import TransformersClassifier  # torch only when needed

    return TransformersClassifier(model_dir, card)


# framework (the card's `framework`) -> loader.
LOADERS: dict[str, Callable[[Path, ModelCard], Classifier]] = {
    "keras": KerasClassifier,
    "transformers": _transformers_classifier,
}


def resolve_model_dir(path: str | Path) -> Path:
    """The Model folder at `path`, or inside a registry version folder (`<version>/model/`)."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"model folder {path} does not exist")
    # a registry version holds a copy of the card beside model/, so look inside first
    if (path / "model" / CARD_FILE).is_file():
        return path / "model"
    if (path / CARD_FILE).is_file():
        return path
    raise ModelLoadError(
        f"{path} is not a Model artifact (no {CARD_FILE}); pass the folder the train step wrote "
        "(model_card.json plus keras/ or hf/) or a registry version folder (<registry>/<name>/vN)"
    )


def load_classifier(model_dir: str | Path) -> Classifier:
    model_dir = resolve_model_dir(model_dir)
    card = ModelCard.load(model_dir)
    loader = LOADERS.get(card.framework)
    if loader is None:
        raise ModelLoadError(
            f"{model_dir}: loading {card.framework} models is not available in this version "
            f"(available: {', '.join(LOADERS)})"
        )
    return loader(model_dir, card)
