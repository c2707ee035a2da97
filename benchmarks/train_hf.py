"""Transformers input pipeline speed on CPU: tiny ViT and ConvNeXt V2 trained from our TFRecord
pipeline vs from in-memory tensors, measured side by side in one run (goal: ratio >= 0.9).

Our pipeline runs in both of the trainer's modes: `streamed` decodes and resizes every image
every epoch in DataLoader workers (splits too big to cache), `cached` decodes once up front
(what small splits get; the one-off decode is reported separately). The baseline slices
batches out of a uint8 tensor that is already in memory. Every mode runs the trainer's step
(crop, normalise, forward, backward, clip, AdamW); epochs of the modes are interleaved so a
busy machine slows them alike, and the median epoch counts.

    python benchmarks/train_hf.py [--images 2000] [--batch-size 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np


def _make_dataset(workdir: Path, images: int, size: int) -> Path:
    from components.ingest.run import ingest
    from components.spec import DataConfig

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, images)
    pixels = rng.normal(20 + labels[:, None, None, None] * 20, 30, (images, size, size, 3))
    np.savez(workdir / "data.npz", x=np.clip(pixels, 0, 255).astype("uint8"), y=labels)
    data = DataConfig(
        source=f"npz:{workdir / 'data.npz'}",
        image_size=(size, size),
        splits={"validation": 0.0, "test": 0.0},
    )
    ingest(data, workdir / "dataset", workdir / "quarantine.csv")
    return workdir / "dataset"


def _checkpoint(folder: Path, kind: str) -> Path:
    from components.models.transformers import quiet_transformers

    with quiet_transformers():
        return _save_checkpoint(folder, kind)


def _save_checkpoint(folder: Path, kind: str) -> Path:
    """A tiny randomly initialised classifier and its image processor config."""
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
            num_labels=10,
        )
        ViTForImageClassification(config).save_pretrained(folder)
        ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(folder)
    else:
        config = ConvNextV2Config(
            num_stages=2, hidden_sizes=[16, 32], depths=[1, 1], patch_size=4, num_labels=10
        )
        ConvNextV2ForImageClassification(config).save_pretrained(folder)
        ConvNextImageProcessorPil(size={"shortest_edge": 32}, crop_pct=0.875).save_pretrained(
            folder
        )
    return folder


def _epoch(model: Any, optimizer: Any, prep: Any, batches: Iterator[tuple[Any, Any]]) -> int:
    """One epoch of the trainer's step; returns the number of images."""
    import torch
    import torch.nn.functional as F

    from components.models.transformers import model_inputs
    from components.train.transformers.loop import MAX_GRAD_NORM

    model.train()
    seen = 0
    for images, labels in batches:
        logits = model(pixel_values=model_inputs(images.float(), prep)).logits
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        seen += len(labels)
    return seen


def measure(
    dataset: Path, checkpoint: Path, batch_size: int, repeats: int
) -> tuple[dict[str, float], float]:
    """Median images/s per mode, and the seconds the cached mode spent decoding up front."""
    import torch

    from components.models.transformers import (
        Preprocessing,
        load_pretrained,
        load_processor_config,
    )
    from components.spec import ModelSpec
    from components.train.transformers.input import SplitBatches

    spec = ModelSpec(name="bench", framework="transformers", checkpoint=str(checkpoint))
    prep = Preprocessing.from_processor_config(load_processor_config(str(checkpoint)))
    model = load_pretrained(str(checkpoint), spec, [str(i) for i in range(10)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    streamed = SplitBatches(dataset, "train", prep, batch_size, shuffle=True, cache=False)
    started = time.perf_counter()
    cached = SplitBatches(dataset, "train", prep, batch_size, shuffle=True, cache=True)
    decode_seconds = time.perf_counter() - started
    images, labels = cached.images.clone(), cached.labels.clone()

    def in_memory(epoch: int) -> Iterator[tuple[Any, Any]]:
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(epoch))
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            yield images[index], labels[index]

    modes: dict[str, Callable[[int], Iterator[tuple[Any, Any]]]] = {
        "in-memory tensors": in_memory,
        "our pipeline, streamed": streamed.epoch,
        "our pipeline, cached": cached.epoch,
    }
    rates: dict[str, list[float]] = {name: [] for name in modes}
    for epoch in range(repeats + 1):
        for name, batches in modes.items():
            began = time.perf_counter()
            seen = _epoch(model, optimizer, prep, batches(epoch))
            if epoch:  # the first round warms up workers, allocator and caches
                rates[name].append(seen / (time.perf_counter() - began))
    return {name: statistics.median(values) for name, values in rates.items()}, decode_seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=32, help="stored image side")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per mode")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: tiny models gain nothing from more, and one thread "
        "leaves the other cores to the DataLoader workers)",
    )
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)

    from components.train.transformers.input import default_workers

    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        dataset = _make_dataset(workdir, args.images, args.size)
        print(
            f"transformers input pipeline on CPU ({args.images} images {args.size}x{args.size}, "
            f"batch {args.batch_size}, {torch.get_num_threads()} torch threads, "
            f"{default_workers()} DataLoader workers, median of {args.repeats} epochs):"
        )
        for kind in ("vit", "convnextv2"):
            rates, decode = measure(
                dataset, _checkpoint(workdir / kind, kind), args.batch_size, args.repeats
            )
            baseline = rates["in-memory tensors"]
            print(f"  {kind}:")
            for name, rate in rates.items():
                ratio = "" if rate is baseline else f"   ratio {rate / baseline:5.2f}"
                print(f"    {name:24s}: {rate:8.0f} images/s{ratio}")
            print(f"    {'cached: decode up front':24s}: {decode:8.2f} s")
    print("goal: ratio >= 0.9 (the input pipeline keeps the model busy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
