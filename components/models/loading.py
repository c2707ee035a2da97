"""One interface over every Model artifact: `load_classifier(dir).predict(images)` -> probabilities.

A loader takes the Model folder and its card and returns a `Classifier`. Every classifier takes
the same input, so evaluation and the predict CLI never branch on the framework: float32 pixels
in [0, 255], already decoded and resized to `card.input_size` with `card.channels` channels.
Normalisation is the model's business (keras models carry it as layers; a transformers loader
applies the card's mean/std).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from components.common.model_card import CARD_FILE, ModelCard
from components.models.artifact import Classifier, ModelLoadError
from components.models.keras import KerasClassifier
from components.models.transformers import TransformersClassifier

__all__ = ["LOADERS", "Classifier", "ModelLoadError", "load_classifier", "resolve_model_dir"]

# framework (the card's `framework`) -> loader; each imports its framework only when called.
LOADERS: dict[str, Callable[[Path, ModelCard], Classifier]] = {
    "keras": KerasClassifier,
    "transformers": TransformersClassifier,
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
