"""Keras input pipeline speed: the same model trained from our TFRecord pipeline vs from
in-memory tensors, measured side by side in one run (goal: ratio >= 0.95), and the time the
digits recipe takes to reach 97% validation accuracy.

    python benchmarks/train_input.py [--images 6000] [--size 32] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np


def _make_npz(path: Path, images: int, size: int) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, images)
    # class-dependent brightness plus noise: learnable, and every image is distinct
    pixels = rng.normal(20 + labels[:, None, None, None] * 20, 30, (images, size, size, 3))
    np.savez(path, x=np.clip(pixels, 0, 255).astype("uint8"), y=labels)


def _images_per_second(model_builder, dataset, images: int, epochs: int) -> float:
    model = model_builder()
    model.fit(dataset, epochs=1, verbose=0)  # warm-up: tracing, caches filled
    started = time.perf_counter()
    model.fit(dataset, epochs=epochs, verbose=0)
    return images * epochs / (time.perf_counter() - started)


def input_ratio(
    workdir: Path, images: int, size: int, epochs: int, batch: int
) -> tuple[float, float]:
    import keras
    import tensorflow as tf

    from components.common.results import DatasetInfo
    from components.common.tfdata import make_dataset
    from components.ingest.run import ingest
    from components.models.keras import build_model
    from components.spec import DataConfig

    _make_npz(workdir / "data.npz", images, size)
    ingest(
        DataConfig(
            source=f"npz:{workdir / 'data.npz'}",
            image_size=(size, size),
            splits={"validation": 0.0, "test": 0.0},
        ),
        workdir / "dataset",
        workdir / "q.csv",
    )
    n_train = DatasetInfo.read(workdir / "dataset")["num_examples"]["train"]

    def builder():
        keras.utils.set_random_seed(0)
        model = build_model(
            "cnn3", 10, (size, size), 3, {"filters": [16, 32, 64], "dense": 64}
        ).model
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        return model

    records = make_dataset(workdir / "dataset", "train", (size, size), 3, batch, shuffle=True)
    tensors = [
        (x.numpy(), y.numpy())
        for x, y in make_dataset(workdir / "dataset", "train", (size, size), 3, 4096, cache=False)
    ]
    x = np.concatenate([t[0] for t in tensors])
    y = np.concatenate([t[1] for t in tensors])
    memory = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shuffle(10_000, seed=0)
        .batch(batch)
        .prefetch(tf.data.AUTOTUNE)
    )
    ours = _images_per_second(builder, records, n_train, epochs)
    baseline = _images_per_second(builder, memory, n_train, epochs)
    return ours, baseline


def time_to_accuracy(workdir: Path, target: float = 0.97) -> tuple[float | None, int]:
    """Seconds of training (ingest excluded) until validation accuracy first reaches `target`."""

    from components.ingest.run import ingest
    from components.train.keras.trainer import train_keras
    from pipelines.config import load_experiment

    experiment = load_experiment("digits")
    ingest(experiment.data, workdir / "digits", workdir / "digits-q.csv")

    spec = experiment.models[0]
    started = time.perf_counter()
    card = train_keras(workdir / "digits", spec, 0, workdir / "digits-model")
    elapsed = time.perf_counter() - started
    accuracy = card.history.get("val_accuracy", [])
    epochs = len(accuracy)
    for epoch, value in enumerate(accuracy, start=1):
        if value >= target:
            return elapsed * epoch / epochs, epoch
    return None, epochs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        ours, baseline = input_ratio(
            Path(folder), args.images, args.size, args.epochs, args.batch_size
        )
        seconds, epochs = time_to_accuracy(Path(folder))
    print(
        f"keras input pipeline ({args.images} images {args.size}x{args.size}, cnn3, {args.epochs} epochs):"
    )
    print(f"  TFRecord pipeline : {ours:9.0f} images/s")
    print(f"  in-memory tensors : {baseline:9.0f} images/s")
    print(f"  ratio             : {ours / baseline:9.2f}  (goal >= 0.95)")
    if seconds is None:
        print(f"digits: 97% validation accuracy not reached in {epochs} epochs")
    else:
        print(
            f"digits: 97% validation accuracy after {epochs} epochs, about {seconds:.1f} s of training"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
