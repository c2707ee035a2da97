"""The Model artifact contract: `model_card.json` beside `keras/` or `hf/`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from components.common.files import read_json, write_json

CARD_FILE = "model_card.json"


class ModelCard(BaseModel):
    model_config = ConfigDict(extra="allow")

    framework: Literal["keras", "transformers"]
    name: str
    seed: int
    class_names: list[str]
    input_size: tuple[int, int]
    channels: int
    # How the model wants its input: raw pixels in [0, 255]; normalisation happens inside
    # (keras) or with mean/std below (transformers).
    preprocessing: str
    mean: list[float] | None = None
    std: list[float] | None = None
    training: dict[str, Any] = {}
    history: dict[str, list[float]] = {}
    dataset_fingerprint: str | None = None

    def save(self, model_dir: str | Path) -> Path:
        return write_json(Path(model_dir) / CARD_FILE, self.model_dump(mode="json"))

    @classmethod
    def load(cls, model_dir: str | Path) -> ModelCard:
        path = Path(model_dir) / CARD_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: {model_dir} is not a Model written by the train step"
            )
        return cls.model_validate(read_json(path))
