"""The transformers trainer's input pipeline: our TFRecords in, uint8 NCHW batches out.

A split's encoded images are read into memory once (bytes, as stored by ingest), by the
pure-Python reader in `components.common.tfrecord` (no TensorFlow here). Each image is
decoded with Pillow and resized to the checkpoint's `input_size` with its resampling filter,
either once up front when the decoded split fits in `CACHE_LIMIT_BYTES`, or every epoch in
DataLoader workers. Batch order is a pure function of (seed, epoch, rank), so a resumed run
sees the same batches as an uninterrupted one. Cropping, augmentation and normalisation run
on whole batches on the training device (`augment_batch`,
`components.models.transformers.model_inputs`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np

from components.common.pixels import decode_resized
from components.common.tfrecord import read_split
from components.models.transformers import Preprocessing
from components.spec import Augment

CACHE_LIMIT_BYTES = 2 * 1024**3
MAX_WORKERS = 8


class EncodedImages:
    """A map-style torch dataset: index -> (uint8 CHW image of `input_size`, label).

    The encoded images live in one numpy buffer rather than a list of bytes objects: forked
    DataLoader workers would otherwise copy every page they touch a refcount on.
    """

    def __init__(self, encoded: list[bytes], labels: np.ndarray, preprocessing: Preprocessing):
        self.blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        self.offsets = np.cumsum([0, *(len(item) for item in encoded)], dtype=np.int64)
        self.labels = labels
        self.preprocessing = preprocessing

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        import torch

        encoded = self.blob[self.offsets[index] : self.offsets[index + 1]].tobytes()
        pixels = decode_resized(encoded, self.preprocessing.input_size, self.preprocessing.resample)
        return torch.from_numpy(pixels).permute(2, 0, 1).contiguous(), int(self.labels[index])


class BatchOrder:
    """Index batches of one epoch for one process: a seeded permutation per epoch (or file
    order), split across `world` processes. Training pads the permutation so every process
    runs the same number of steps (DDP needs that); evaluation does not pad."""

    def __init__(
        self,
        size: int,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        pad: bool = True,
    ):
        self.size, self.batch_size, self.shuffle = size, batch_size, shuffle
        self.seed, self.rank, self.world, self.pad = seed, rank, world, pad
        self.epoch = 0

    def indices(self) -> list[int]:
        import torch

        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        if self.pad and self.world > 1 and self.size:
            total = math.ceil(self.size / self.world) * self.world
            order += order[: total - self.size]
        return order[self.rank :: self.world]

    def __iter__(self) -> Iterator[list[int]]:
        order = self.indices()
        for start in range(0, len(order), self.batch_size):
            yield order[start : start + self.batch_size]

    def __len__(self) -> int:
        return math.ceil(len(self.indices()) / self.batch_size)


def default_workers(world: int = 1) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(MAX_WORKERS, max((cores or 1) // world - 1, 0))


class SplitBatches:
    """uint8 NCHW image batches and int64 labels of one split, epoch by epoch."""

    def __init__(
        self,
        dataset_dir: str | Path,
        split: str,
        preprocessing: Preprocessing,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        cache: bool | None = None,
        workers: int | None = None,
        pin_memory: bool = False,
    ):
        import torch

        encoded, labels = read_split(dataset_dir, split)
        if not encoded:
            raise FileNotFoundError(f"no {split} images in {dataset_dir}")
        self.size = len(encoded)
        self.labels = torch.from_numpy(labels)
        # a map-style dataset by protocol (torch is imported only when this runs)
        self.dataset = cast(Any, EncodedImages(encoded, labels, preprocessing))
        self.order = BatchOrder(
            self.size, batch_size, shuffle, seed, rank, world, pad=shuffle and world > 1
        )
        height, width = preprocessing.input_size
        if cache is None:
            cache = self.size * height * width * 3 <= CACHE_LIMIT_BYTES
        workers = default_workers(world) if workers is None else workers
        self.images: Any = None
        self.loader: Any = None
        if cache:
            self.images = decode_all(self.dataset, workers)
        else:
            self.loader = torch.utils.data.DataLoader(
                self.dataset,
                batch_sampler=self.order,
                num_workers=workers,
                persistent_workers=workers > 0,
                pin_memory=pin_memory,
            )

    def __len__(self) -> int:
        return len(self.order)

    def epoch(self, epoch: int) -> Iterator[tuple[Any, Any]]:
        self.order.epoch = epoch
        if self.images is not None:
            for batch in self.order:
                index = np.asarray(batch)
                yield self.images[index], self.labels[index]
        else:
            yield from self.loader


def decode_all(dataset: Any, workers: int) -> Any:
    """Every image of an `EncodedImages` as one uint8 (N, 3, H, W) tensor."""
    import torch

    height, width = dataset.preprocessing.input_size
    images = torch.empty((len(dataset), 3, height, width), dtype=torch.uint8)
    loader = torch.utils.data.DataLoader(dataset, batch_size=256, num_workers=workers)
    start = 0
    for batch, _ in loader:
        images[start : start + len(batch)] = batch
        start += len(batch)
    return images


# --- augmentation ----------------------------------------------------------------------------


def augment_batch(images: Any, augment: Augment, generator: Any) -> Any:
    """Random flips, rotation, zoom, translation and contrast of a float NCHW [0, 255] batch,
    with the Keras preprocessing layers' meaning of each factor and reflect filling."""
    import torch
    import torch.nn.functional as F

    count, _, height, width = images.shape
    device = images.device

    def uniform(low: float, high: float) -> Any:
        return torch.rand(count, generator=generator, device=device) * (high - low) + low

    if augment.flip in ("horizontal", "horizontal_and_vertical"):
        flip = uniform(0, 1) < 0.5
        images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
    if augment.flip in ("vertical", "horizontal_and_vertical"):
        flip = uniform(0, 1) < 0.5
        images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-2), images)
    if augment.rotation or augment.zoom or augment.translation:
        # Output pixel -> input pixel, in affine_grid's [-1, 1] coordinates. Rotation is done
        # in pixel units so non-square images are not sheared.
        angle = uniform(-augment.rotation, augment.rotation) * 2 * math.pi
        scale = 1 + uniform(-augment.zoom, augment.zoom)  # > 1 zooms out, as in Keras
        shift_x = uniform(-augment.translation, augment.translation) * 2
        shift_y = uniform(-augment.translation, augment.translation) * 2
        cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
        theta = torch.stack(
            [
                torch.stack([cos, -sin * height / width, shift_x], dim=1),
                torch.stack([sin * width / height, cos, shift_y], dim=1),
            ],
            dim=1,
        ).to(images.dtype)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        images = F.grid_sample(
            images, grid, mode="bilinear", padding_mode="reflection", align_corners=False
        )
    if augment.contrast:
        factor = uniform(1 - augment.contrast, 1 + augment.contrast).view(-1, 1, 1, 1)
        mean = images.mean(dim=(-2, -1), keepdim=True)
        images = ((images - mean) * factor.to(images.dtype) + mean).clamp(0, 255)
    return images
