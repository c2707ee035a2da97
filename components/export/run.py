"""The export step: convert the best model to each configured format, measure each file with its
own runtime against the original, keep the formats within their accuracy budget.

The Export artifact holds the passing files (names in `formats.FILES`), `export.json` (the
record: every format, passed or failed, with its figures) and `report.html`. A format that
loses more test accuracy than `max_accuracy_drop` allows, or whose conversion fails, is in the
record with the reason and its file is not kept, so it is never registered.
"""

from __future__ import annotations

import platform
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from components.common.export_artifact import (
    FILES,
    INPUT_CONTRACT,
    PRECISION_NOTES,
    RECORD_FILE,
    REPORT_FILE,
    RUNTIMES,
)
from components.common.files import write_json
from components.common.model_card import ModelCard
from components.export import measure
from components.export.onnx_quantize import CALIBRATION_BATCH
from components.export.runtimes import usable_cores
from components.spec import EXPORT_FORMATS, ExportConfig

NATIVE = "native"
# Accuracy is compared to this many decimals, so an equal accuracy never fails on float noise.
ACCURACY_DECIMALS = 9


def export_model(
    model_dir: str | Path,
    dataset_dir: str | Path,
    export_dir: str | Path,
    config: ExportConfig,
    report_path: str | Path | None = None,
) -> dict[str, Any]:
    """Convert, measure and gate every format; returns the record written to export.json."""
    from components.export.report import write_report
    from components.models.loading import load_classifier

    model_dir, export_dir = Path(model_dir), Path(export_dir)
    card = ModelCard.load(model_dir)
    formats = config.formats_for(card.framework)
    export_dir.mkdir(parents=True, exist_ok=True)
    native = load_classifier(model_dir)
    labels, reference = measure.predict_split(native, dataset_dir)
    test = Measured(
        dataset_dir,
        labels,
        reference,
        measure.first_images(dataset_dir, card, "test", measure.LATENCY_IMAGES),
    )
    calibration = measure.first_images(dataset_dir, card, "train", config.calibration_images)
    rows = [_native_row(native, model_dir, test)]
    with tempfile.TemporaryDirectory(dir=export_dir, prefix=".convert-") as scratch:
        for name in formats:
            row = _format_row(name, native, model_dir, Path(scratch), calibration, test, config)
            if row["passed"]:
                shutil.move(str(Path(scratch) / FILES[name]), export_dir / FILES[name])
            rows.append(row)
            print(_summary_line(row), flush=True)
    record = {
        "model": card.name,
        "framework": card.framework,
        "input": INPUT_CONTRACT,
        "input_size": list(card.input_size),
        "channels": card.channels,
        "test_images": int(len(labels)),
        "calibration_images": int(len(calibration)),
        "cpu": f"{platform.processor() or platform.machine()}, {usable_cores()} cores",
        "formats": rows,
        "passed": [r["format"] for r in rows[1:] if r["passed"]],
        "failed": [r["format"] for r in rows[1:] if not r["passed"]],
    }
    write_json(export_dir / RECORD_FILE, record)
    write_report(record, export_dir / REPORT_FILE)
    if report_path is not None:
        shutil.copyfile(export_dir / REPORT_FILE, report_path)
    return record


@dataclass(frozen=True)
class Measured:
    """The test split and the original model's answers, which every format is compared with."""

    dataset_dir: str | Path
    labels: np.ndarray
    reference: np.ndarray  # the native model's probabilities
    sample: np.ndarray  # the images the speed is measured on

    @property
    def accuracy(self) -> float:
        return measure.accuracy(self.labels, self.reference)


def _native_row(native: Any, model_dir: Path, test: Measured) -> dict[str, Any]:
    from components.models.keras import KERAS_DIR, MODEL_FILE
    from components.models.transformers import HF_DIR

    framework = native.card.framework
    # the size of what the native runtime loads: the Keras file, or the save_pretrained folder
    native_file = {"keras": f"{KERAS_DIR}/{MODEL_FILE}", "transformers": HF_DIR}[framework]
    return {
        "format": NATIVE,
        "runtime": "Keras" if framework == "keras" else "PyTorch",
        "precision": "float32",
        "size_bytes": measure.size_bytes(model_dir / native_file),
        "accuracy": test.accuracy,
        "accuracy_delta": 0.0,
        "agreement": 1.0,
        **measure.speed(native, test.sample).as_dict(),
        "passed": True,
    }


def _format_row(
    name: str,
    native: Any,
    model_dir: Path,
    scratch: Path,
    calibration: np.ndarray,
    test: Measured,
    config: ExportConfig,
) -> dict[str, Any]:
    """Convert and measure one format; `passed` says whether it stays within its budget."""
    row: dict[str, Any] = {
        "format": name,
        "file": FILES[name],
        "runtime": RUNTIMES[name],
        "precision": PRECISION_NOTES[name],
        "max_accuracy_drop": config.max_drop(name),
    }
    try:
        convert(name, native, model_dir, scratch / FILES[name], calibration)
        row.update(_measured(name, scratch / FILES[name], native.card, test))
    except Exception as exc:  # a format that cannot be made is reported, not fatal
        row.update(passed=False, reason=f"conversion failed: {type(exc).__name__}: {exc}")
        return row
    row["accuracy_delta"] = row["accuracy"] - test.accuracy
    drop = round(test.accuracy - row["accuracy"], ACCURACY_DECIMALS)
    row["passed"] = drop <= row["max_accuracy_drop"]
    if not row["passed"]:
        row["reason"] = (
            f"loses {drop:.4f} test accuracy, more than max_accuracy_drop."
            f"{EXPORT_FORMATS[name][0]} = {row['max_accuracy_drop']:.4f}; not registered"
        )
    return row


def convert(
    name: str, native: Any, model_dir: Path, destination: Path, calibration: np.ndarray
) -> Path:
    """Write the `name` format of the loaded native classifier to `destination`."""
    from components.export import keras_convert, onnx_quantize

    if name == "saved_model":
        return keras_convert.copy_saved_model(model_dir, destination)
    if name in ("onnx", "onnx_int8"):
        float_path = destination if name == "onnx" else destination.with_suffix(".float.onnx")
        if native.card.framework == "keras":
            keras_convert.to_onnx(native.model, float_path)
        else:
            from components.export import transformers_convert

            transformers_convert.to_onnx(native, float_path)
        if name == "onnx":
            return destination
        onnx_quantize.quantize_static(
            float_path, destination, _batches(calibration, CALIBRATION_BATCH)
        )
        float_path.unlink()
        return destination
    precision = {"tflite": "float32", "tflite_float16": "float16", "tflite_int8": "int8"}[name]
    return keras_convert.to_tflite(
        model_dir, destination, precision, calibration=lambda: _batches(calibration, 1)
    )


def _batches(images: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(images), size):
        yield np.ascontiguousarray(images[start : start + size], dtype=np.float32)


def _measured(name: str, path: Path, card: ModelCard, test: Measured) -> dict[str, Any]:
    from components.export.runtimes import load_exported

    exported = load_exported(path.parent, name, card)
    labels, probabilities = measure.predict_split(exported, test.dataset_dir)
    return {
        "size_bytes": measure.size_bytes(path),
        "accuracy": measure.accuracy(labels, probabilities),
        "agreement": measure.agreement(probabilities, test.reference),
        **measure.speed(exported, test.sample).as_dict(),
    }


def _summary_line(row: dict[str, Any]) -> str:
    if "accuracy" not in row:
        return f"export {row['format']}: FAILED, {row['reason']}"
    verdict = "ok" if row["passed"] else f"FAILED, {row['reason']}"
    return (
        f"export {row['format']}: {verdict}, {row['size_bytes'] / 1e6:.2f} MB, accuracy "
        f"{row['accuracy']:.4f} ({row['accuracy_delta']:+.4f}), agreement {row['agreement']:.4f}, "
        f"p50 {row['latency_ms_p50']:.2f} ms, {row['throughput']:.0f} images/s at batch "
        f"{measure.THROUGHPUT_BATCH}"
    )
