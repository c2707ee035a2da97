from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

# Keep TensorFlow's start-up chatter out of test output; threads stay at their defaults.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def write_image_dataset(
    root: Path,
    levels: dict[str, int],
    per_class: int,
    shape: tuple[int, int] = (32, 32),
    noise: float = 20.0,
    image_size: tuple[int, int] | None = None,
    validation: float = 0.15,
    test: float = 0.15,
) -> Path:
    """Noisy flat PNGs, one class per brightness level, ingested into `root/dataset`."""
    from PIL import Image

    from components.ingest.run import ingest
    from pipelines.config import DataConfig

    rng = np.random.default_rng(0)
    for name, level in levels.items():
        folder = root / "images" / name
        folder.mkdir(parents=True)
        for index in range(per_class):
            pixels = np.clip(rng.normal(level, noise, (*shape, 3)), 0, 255).astype("uint8")
            Image.fromarray(pixels).save(folder / f"{index}.png")
    config = DataConfig(
        source=f"folder:{root / 'images'}",
        image_size=image_size or shape,
        splits={"validation": validation, "test": test},
    )
    ingest(config, root / "dataset", root / "quarantine.csv")
    return root / "dataset"


@pytest.fixture(scope="session")
def image_dataset() -> Callable[..., Path]:
    """Build a small class-per-brightness Dataset artifact: `image_dataset(root, levels, ...)`."""
    return write_image_dataset
