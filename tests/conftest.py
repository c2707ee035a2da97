from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    from components.spec import DataConfig

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


def write_tiny_hf_checkpoint(folder: Path, kind: str) -> Path:
    """A tiny randomly initialised classifier (5 labels) and its image processor config, saved
    with save_pretrained: a checkpoint folder that needs no Hub download."""
    import torch
    from transformers import (
        ConvNextImageProcessorPil,
        ConvNextV2Config,
        ConvNextV2ForImageClassification,
        ViTConfig,
        ViTForImageClassification,
        ViTImageProcessorPil,
    )

    torch.manual_seed(0)
    if kind == "vit":
        config = ViTConfig(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            num_labels=5,
        )
        model: Any = ViTForImageClassification(config)
        processor: Any = ViTImageProcessorPil(
            size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3
        )
    else:
        config = ConvNextV2Config(
            num_stages=2, hidden_sizes=[16, 32], depths=[1, 1], patch_size=4, num_labels=5
        )
        model = ConvNextV2ForImageClassification(config)
        # ImageNet statistics and ConvNeXt's resize-then-crop: 36 x 36, centre 32 x 32.
        processor = ConvNextImageProcessorPil(size={"shortest_edge": 32}, crop_pct=0.875)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_hf_checkpoint() -> Callable[..., Path]:
    """Save a tiny ViT or ConvNeXt V2 checkpoint: `tiny_hf_checkpoint(folder, "vit")`."""
    return write_tiny_hf_checkpoint


class TensorBoardEvents:
    """Reads TensorBoard event files the way TensorBoard does."""

    @staticmethod
    def _accumulator(folder: Path) -> Any:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        accumulator = EventAccumulator(str(folder))
        accumulator.Reload()
        return accumulator

    def scalar_tags(self, folder: Path) -> set[str]:
        tags = self._accumulator(folder).Tags()
        # TensorFlow's summary ops write scalars as tensors; tensorboardX as scalars
        return set(tags.get("scalars", [])) | set(tags.get("tensors", []))

    def has_keras_graph(self, folder: Path) -> bool:
        """The Keras model graph (TensorBoard's conceptual graph, summary tag `keras`)."""
        return "keras" in self._accumulator(folder).Tags().get("tensors", [])


@pytest.fixture(scope="session")
def tensorboard_events() -> TensorBoardEvents:
    return TensorBoardEvents()
