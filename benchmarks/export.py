"""Deployable formats against the native Keras model, measured side by side in one run.

For the digits recipe (small CNN, 8x8 grey) and MobileNetV3Small (random init, no downloaded
weights, trained briefly on digits upscaled to 32x32 RGB; its batch-norm statistics, which a
few hundred steps at momentum 0.999 leave near their initial values, are then re-estimated on
one large train batch so the model predicts well): the export step converts the trained
model to every format and reports size and test accuracy; then each format and the native model
are timed alternately (native, format, native, format, ... after a warm-up) at batch 1
(latency p50 / p90 per image) and at batch 32 (throughput). Speed-ups are native / format,
median with min-max over the rounds. Goal: int8 at least 2x faster than native at batch 1 with
at most 1 point of accuracy lost.

    python benchmarks/export.py [--rounds 5] [--epochs 30] [--mobilenet-epochs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FORMATS = ["onnx", "onnx_int8", "tflite", "tflite_float16", "tflite_int8"]


def train_model(workdir: Path, name: str, data: dict[str, Any], spec: dict[str, Any]) -> Path:
    from components.ingest.run import ingest
    from components.spec import DataConfig, ModelSpec
    from components.train.keras.trainer import train_keras

    # the steps' own progress goes to stderr, so stdout is the table
    with contextlib.redirect_stdout(sys.stderr):
        ingest(DataConfig.model_validate(data), workdir / f"{name}-data", workdir / f"{name}-q.csv")
        train_keras(workdir / f"{name}-data", ModelSpec.model_validate(spec), 0, workdir / name)
    return workdir / name


def recalibrate_batch_norm(model_dir: Path, dataset_dir: Path) -> None:
    """Re-estimate every BatchNormalization's moving mean and variance on 512 train images and
    save the model (model.keras and its SavedModel) again."""
    import keras

    from components.common.model_card import ModelCard
    from components.common.tfdata import make_dataset

    path = model_dir / "keras" / "model.keras"
    model = keras.saving.load_model(path)
    layers = [
        layer
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0  # the moving statistics become this batch's statistics
    size = tuple(ModelCard.load(model_dir).input_size)
    images, _ = next(iter(make_dataset(dataset_dir, "train", size, 3, 512, cache=False)))
    model(images, training=True)
    for layer, momentum in zip(layers, momenta, strict=True):
        layer.momentum = momentum
    model.save(path)
    model.export(str(model_dir / "keras" / "saved_model"), verbose=False)


def side_by_side(native: Any, exported: Any, sample: Any, rounds: int) -> dict[str, list[float]]:
    """Alternate native and exported speed measurements; both lists per figure."""
    from components.export.measure import speed

    speed(native, sample), speed(exported, sample)  # warm-up
    figures: dict[str, list[float]] = {}
    for index in range(rounds):
        pair = (native, exported) if index % 2 == 0 else (exported, native)
        measured = {id(c): speed(c, sample) for c in pair}
        a, b = measured[id(native)], measured[id(exported)]
        figures.setdefault("p50", []).append(b.latency_ms_p50)
        figures.setdefault("p90", []).append(b.latency_ms_p90)
        figures.setdefault("throughput", []).append(b.throughput)
        figures.setdefault("native_p50", []).append(a.latency_ms_p50)
        figures.setdefault("native_throughput", []).append(a.throughput)
        figures.setdefault("speedup_b1", []).append(a.latency_ms_p50 / b.latency_ms_p50)
        figures.setdefault("speedup_b32", []).append(b.throughput / a.throughput)
    return figures


def spread(values: list[float], pattern: str = "{:.2f}") -> str:
    return (
        f"{pattern.format(statistics.median(values))} "
        f"[{pattern.format(min(values))}-{pattern.format(max(values))}]"
    )


def bench_model(workdir: Path, title: str, model_dir: Path, rounds: int) -> None:
    from components.export import measure
    from components.export.run import export_model
    from components.export.runtimes import load_exported
    from components.models.loading import load_classifier
    from components.spec.export import ExportConfig

    dataset = model_dir.parent / f"{model_dir.name}-data"
    with contextlib.redirect_stdout(sys.stderr):
        record = export_model(
            model_dir, dataset, workdir / f"{model_dir.name}-export", ExportConfig(formats=FORMATS)
        )
    native = load_classifier(model_dir)
    sample = measure.first_images(dataset, native.card, "test", measure.LATENCY_IMAGES)
    rows = {row["format"]: row for row in record["formats"]}
    print(f"\n{title}: {record['test_images']} test images, {record['cpu']}, {rounds} rounds")
    print(
        f"  native Keras: {rows['native']['size_bytes'] / 1e6:.2f} MB, accuracy "
        f"{rows['native']['accuracy']:.4f}"
    )
    header = (
        f"  {'format':<15}{'MB':>7} {'acc delta':>10} {'p50 ms (b1)':>22} {'p90 ms (b1)':>22} "
        f"{'images/s (b32)':>22} {'x native (b1)':>22} {'x native (b32)':>22}"
    )
    print(header)
    natives_p50: list[float] = []
    for name in ["saved_model", *FORMATS]:
        row = rows[name]
        if "accuracy" not in row:
            print(f"  {name:<15} {row['reason']}")
            continue
        exported = load_exported(workdir / f"{model_dir.name}-export", name, native.card)
        figures = side_by_side(native, exported, sample, rounds)
        natives_p50 += figures["native_p50"]
        verdict = "" if row["passed"] else "  (over its accuracy budget)"
        print(
            f"  {name:<15}{row['size_bytes'] / 1e6:>7.2f} {row['accuracy_delta']:>+10.4f} "
            f"{spread(figures['p50'], '{:.3f}'):>22} {spread(figures['p90'], '{:.3f}'):>22} "
            f"{spread(figures['throughput'], '{:.0f}'):>22} "
            f"{spread(figures['speedup_b1']):>22} {spread(figures['speedup_b32']):>22}{verdict}"
        )
    print(f"  native Keras p50 at batch 1 over all rounds: {spread(natives_p50, '{:.3f}')} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--mobilenet-epochs", type=int, default=3)
    args = parser.parse_args(argv)
    optimizer = {"name": "adam", "learning_rate": 3e-3}
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        digits = train_model(
            workdir,
            "digits",
            {
                "source": "sklearn:digits",
                "image_size": [8, 8],
                "channels": 1,
                "splits": {"validation": 0.1, "test": 0.2},
            },
            {
                "name": "small-cnn",
                "architecture": "small_cnn",
                "epochs": args.epochs,
                "batch_size": 32,
                "optimizer": optimizer,
            },
        )
        bench_model(workdir, "digits small CNN (8x8x1)", digits, args.rounds)
        mobilenet = train_model(
            workdir,
            "mobilenet",
            {
                "source": "sklearn:digits",
                "image_size": [32, 32],
                "channels": 3,
                "splits": {"validation": 0.1, "test": 0.2},
            },
            {
                "name": "mobilenetv3small",
                "architecture": "mobilenetv3small",
                "weights": "none",
                "epochs": args.mobilenet_epochs,
                "batch_size": 32,
                "optimizer": optimizer,
            },
        )
        with contextlib.redirect_stdout(sys.stderr):
            recalibrate_batch_norm(mobilenet, workdir / "mobilenet-data")
        bench_model(
            workdir, "MobileNetV3Small (32x32x3, no pretrained weights)", mobilenet, args.rounds
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
