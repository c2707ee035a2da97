"""Conversion: the loaded native classifier -> one format's file, by the format's record.

A format's `runtime` picks its converter (`CONVERTERS`) and its `dtype` what the converter
makes: the SavedModel the train step wrote, copied; ONNX from the keras or the transformers
model, quantised to int8 when the format says so; TFLite from the SavedModel, as float32,
float16 weights or full-integer int8.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from components.spec.export import (
    EXPORT_FORMATS,
    LITERT,
    ONNX_RUNTIME,
    TENSORFLOW,
    ExportFormat,
)

Converter = Callable[[ExportFormat, Any, Path, Path, np.ndarray], Path]


def convert(
    name: str, native: Any, model_dir: Path, destination: Path, calibration: np.ndarray
) -> Path:
    """Write the `name` format of the loaded native classifier (of the Model in `model_dir`) to
    `destination`; int8 formats are calibrated on `calibration` (train images)."""
    form = EXPORT_FORMATS[name]
    return CONVERTERS[form.runtime](form, native, model_dir, destination, calibration)


def _saved_model(
    form: ExportFormat, native: Any, model_dir: Path, destination: Path, calibration: np.ndarray
) -> Path:
    from components.export import keras_convert

    return keras_convert.copy_saved_model(model_dir, destination)


def _onnx(
    form: ExportFormat, native: Any, model_dir: Path, destination: Path, calibration: np.ndarray
) -> Path:
    from components.export import keras_convert, onnx_quantize

    if form.dtype not in ("float32", "int8"):
        raise ValueError(f"{form.name}: ONNX conversion makes float32 or int8, not {form.dtype}")
    float_path = destination if form.dtype == "float32" else destination.with_suffix(".float.onnx")
    if native.card.framework == "keras":
        keras_convert.to_onnx(native.model, float_path)
    else:
        from components.export import transformers_convert

        transformers_convert.to_onnx(native, float_path)
    if form.dtype == "float32":
        return destination
    onnx_quantize.quantize_static(
        float_path, destination, batches(calibration, onnx_quantize.CALIBRATION_BATCH)
    )
    float_path.unlink()
    return destination


def _tflite(
    form: ExportFormat, native: Any, model_dir: Path, destination: Path, calibration: np.ndarray
) -> Path:
    from components.export import keras_convert

    return keras_convert.to_tflite(
        model_dir, destination, form.dtype, calibration=lambda: batches(calibration, 1)
    )


# runtime -> what makes a file it runs (components/export/runtimes.py: what runs it)
CONVERTERS: dict[str, Converter] = {
    TENSORFLOW: _saved_model,
    ONNX_RUNTIME: _onnx,
    LITERT: _tflite,
}


def batches(images: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(images), size):
        yield np.ascontiguousarray(images[start : start + size], dtype=np.float32)
