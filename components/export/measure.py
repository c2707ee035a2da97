"""What a format costs: accuracy on the whole test split, agreement with the original, latency
at batch 1 and throughput at batch 32, each with the format's own runtime on this CPU."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from components.common.model_card import ModelCard

EVAL_BATCH = 64
LATENCY_IMAGES = 100  # batch-1 calls timed, after the warm-up
THROUGHPUT_BATCH = 32
THROUGHPUT_ROUNDS = 10
WARMUP_CALLS = 5


@dataclass(frozen=True)
class Speed:
    latency_ms_p50: float
    latency_ms_p90: float
    throughput: float  # images per second at THROUGHPUT_BATCH

    def as_dict(self) -> dict[str, float]:
        return {
            "latency_ms_p50": self.latency_ms_p50,
            "latency_ms_p90": self.latency_ms_p90,
            "throughput": self.throughput,
        }


def split_batches(
    dataset_dir: str | Path, card: ModelCard, split: str, batch_size: int = EVAL_BATCH
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(images, labels) batches of one split, decoded and resized as evaluation does."""
    from components.common.tfdata import make_dataset

    dataset = make_dataset(
        dataset_dir,
        split,
        (int(card.input_size[0]), int(card.input_size[1])),
        card.channels,
        batch_size,
        cache=False,
    )
    for images, labels in dataset:
        yield images.numpy(), labels.numpy().astype(np.int64)


def first_images(dataset_dir: str | Path, card: ModelCard, split: str, count: int) -> np.ndarray:
    """The first `count` images of `split` (fewer when the split is smaller)."""
    batches, taken = [], 0
    for images, _ in split_batches(dataset_dir, card, split):
        batches.append(images[: count - taken])
        taken += len(batches[-1])
        if taken >= count:
            break
    if not batches:
        raise ValueError(f"the {split} split of {dataset_dir} has no images")
    return np.concatenate(batches)


def speed(classifier: Any, images: np.ndarray) -> Speed:
    """Median and p90 latency per image at batch 1, and images/s at batch 32."""
    singles = images[:LATENCY_IMAGES]
    for index in range(WARMUP_CALLS):
        classifier.predict(singles[index % len(singles)][None])
    timings = []
    for image in singles:
        start = time.perf_counter()
        classifier.predict(image[None])
        timings.append(time.perf_counter() - start)
    repeats = -(-THROUGHPUT_BATCH // len(images))
    batch = np.concatenate([images] * repeats)[:THROUGHPUT_BATCH]
    classifier.predict(batch)
    rates = []
    for _ in range(THROUGHPUT_ROUNDS):
        start = time.perf_counter()
        classifier.predict(batch)
        rates.append(THROUGHPUT_BATCH / (time.perf_counter() - start))
    milliseconds = np.asarray(timings) * 1000.0
    return Speed(
        latency_ms_p50=float(np.percentile(milliseconds, 50)),
        latency_ms_p90=float(np.percentile(milliseconds, 90)),
        throughput=float(np.median(rates)),
    )


def size_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def accuracy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(labels, probabilities.argmax(axis=1)))


def agreement(probabilities: np.ndarray, reference: np.ndarray) -> float:
    """Share of images whose top class is the original model's top class."""
    return float(np.mean(probabilities.argmax(axis=1) == reference.argmax(axis=1)))
