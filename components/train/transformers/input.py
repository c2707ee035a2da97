"""The transformers trainer's input pipeline: our TFRecords in, uint8 NCHW batches out.

A split's encoded images are read into memory once (bytes, as stored by ingest), by the
pure-Python reader in `components.common.tfrecord` (no TensorFlow here). Each image is
decoded with Pillow and resized to the checkpoint's `input_size` with its resampling filter,
either once up front when the decoded split fits in `CACHE_LIMIT_BYTES`, or every epoch in
DataLoader workers. Batch order is a pure function of (seed, epoch), and each process's part
of it of (rank, world), so a resumed run sees the same batches as an uninterrupted one, and a
step sees the same examples on any number of processes. Cropping, augmentation and normalisation run
on whole batches on the training device (`augment_batch`,
`components.models.transformers.model_inputs`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from components.common.folds import read_part
from components.common.pixels import decode_resized
from components.common.tfrecord import read_split
from components.models.transformers import Preprocessing
from components.spec import Augment, Fold

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


@dataclass(frozen=True)
class Share:
    """Process `rank`'s part of one step's batch over `world` processes: its indices (the
    step's examples rank, rank + world, ...), of which the first `real` are examples of the
    step (the rest repeat examples to even out the processes, and weigh 0), and `batch`, the
    examples the step has over all processes."""

    indices: list[int]
    real: int
    batch: int
    rank: int = 0
    world: int = 1

    def positions(self) -> list[int]:
        """Where this process's examples are in the step's batch (padding: past its end)."""
        return list(range(self.rank, self.rank + len(self.indices) * self.world, self.world))


class BatchOrder:
    """Index batches of one epoch for one process. `batch_size` is the batch of one step over
    every process: step k takes examples k*batch_size to (k+1)*batch_size - 1 of the epoch's
    seeded permutation (or of file order), whatever the number of processes, and process
    `rank` of `world` takes every world-th of them. So the steps, their examples and their
    order are the same on 1 process and on 8. Training pads each step to a multiple of
    `world` (DDP needs the same number of examples on every process; the padding weighs 0);
    evaluation does not pad, and a process with no example of a step skips it."""

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

    def permutation(self) -> list[int]:
        """The epoch's order of every example, the same on every process."""
        import torch

        if not self.shuffle:
            return list(range(self.size))
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return list(torch.randperm(self.size, generator=generator).tolist())

    def shares(self) -> list[Share]:
        order = self.permutation()
        shares = []
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            size, real = len(batch), len(batch[self.rank :: self.world])
            if self.pad:
                batch += [order[i % len(order)] for i in range(-size % self.world)]
            elif not real:
                continue
            shares.append(Share(batch[self.rank :: self.world], real, size, self.rank, self.world))
        return shares

    def indices(self) -> list[int]:
        return [i for share in self.shares() for i in share.indices]

    def __iter__(self) -> Iterator[list[int]]:
        for share in self.shares():
            yield share.indices

    def __len__(self) -> int:
        return len(self.shares())


def default_workers(world: int = 1) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(MAX_WORKERS, max((cores or 1) // world - 1, 0))


class SplitBatches:
    """uint8 NCHW image batches and int64 labels of one split (with a `fold`, of its part of
    train + validation), epoch by epoch."""

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
        fold: Fold | None = None,
    ):
        import torch

        encoded, labels = (
            read_split(dataset_dir, split) if fold is None else read_part(dataset_dir, fold, split)
        )
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
        for images, labels, _ in self.steps(epoch):
            yield images, labels

    def steps(self, epoch: int) -> Iterator[tuple[Any, Any, Share]]:
        """(images, labels, this process's `Share` of the step) for every step of `epoch`."""
        self.order.epoch = epoch
        shares = self.order.shares()
        if self.images is not None:
            for share in shares:
                index = np.asarray(share.indices)
                yield self.images[index], self.labels[index], share
        else:
            # The loader's batch sampler is this same order, drawn again for this epoch.
            for (images, labels), share in zip(self.loader, shares, strict=True):
                yield images, labels, share


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


# Keras' fill modes in grid_sample's words ("zeros" is black: the images are 0-255 pixels here).
GRID_PADDING = {"reflect": "reflection", "nearest": "border", "constant": "zeros"}


def augment_batch(images: Any, augment: Augment, generator: Any, share: Share | None = None) -> Any:
    """Random flips, rotation, zoom, translation and contrast of a float NCHW [0, 255] batch,
    with the Keras preprocessing layers' meaning of each factor and of `augment.fill`.

    With the `share` of a step over several processes, every process draws the random numbers
    of the whole step's batch from the same `generator` and keeps its own examples' ones: each
    example is augmented as on one process.
    """
    import torch
    import torch.nn.functional as F

    count, _, height, width = images.shape
    device = images.device
    drawn = count if share is None else share.batch
    # the padding (past the step's examples) reuses values: its examples weigh 0
    mine = None if share is None else torch.tensor(share.positions(), device=device) % drawn

    def uniform(low: float, high: float) -> Any:
        values = torch.rand(drawn, generator=generator, device=device) * (high - low) + low
        return values if mine is None else values[mine]

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
            images,
            grid,
            mode="bilinear",
            padding_mode=GRID_PADDING[augment.fill],
            align_corners=False,
        )
    if augment.contrast:
        factor = uniform(1 - augment.contrast, 1 + augment.contrast).view(-1, 1, 1, 1)
        mean = images.mean(dim=(-2, -1), keepdim=True)
        images = ((images - mean) * factor.to(images.dtype) + mean).clamp(0, 255)
    return images
