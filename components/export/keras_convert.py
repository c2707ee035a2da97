"""Keras Model -> ONNX (tf2onnx) and TFLite (the TFLite converter, from the SavedModel).

The train step writes `keras/model.keras` and `keras/saved_model/`; the SavedModel's serving
signature takes the model's input and returns its softmax, which is what every format keeps.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from components.common.export_artifact import INPUT_NAME, ONNX_OPSET


def saved_model_dir(model_dir: Path) -> Path:
    from components.models.keras import KERAS_DIR, SAVED_MODEL_DIR

    path = Path(model_dir) / KERAS_DIR / SAVED_MODEL_DIR
    if not (path / "saved_model.pb").is_file():
        raise FileNotFoundError(
            f"{path} holds no SavedModel: a keras Model artifact has keras/saved_model/ "
            "(written by the train step); retrain or point at the train step's Model"
        )
    return path


def copy_saved_model(model_dir: Path, destination: Path) -> Path:
    shutil.copytree(saved_model_dir(model_dir), destination, dirs_exist_ok=True)
    return destination


def to_onnx(model: Any, destination: Path) -> Path:
    """The keras model as ONNX with a dynamic batch axis (tf2onnx)."""
    import tensorflow as tf
    import tf2onnx

    shape = (None, *model.input_shape[1:])
    signature = (tf.TensorSpec(shape, tf.float32, name=INPUT_NAME),)
    model_proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=ONNX_OPSET)
    _name_output(model_proto)
    destination.write_bytes(model_proto.SerializeToString())
    return destination


def _name_output(model_proto: Any) -> None:
    """Rename the graph's only output to `probabilities` (tf2onnx names it after the layer)."""
    from components.common.export_artifact import OUTPUT_NAME

    graph = model_proto.graph
    old = graph.output[0].name
    if old == OUTPUT_NAME:
        return
    for node in graph.node:
        for index, name in enumerate(node.output):
            if name == old:
                node.output[index] = OUTPUT_NAME
    graph.output[0].name = OUTPUT_NAME


def to_tflite(
    model_dir: Path,
    destination: Path,
    precision: str,
    calibration: Callable[[], Iterator[np.ndarray]] | None = None,
) -> Path:
    """SavedModel -> TFLite: float32, float16 weights, or full-integer int8.

    int8 quantises every op with ranges from `calibration` (batches of 1 image) and keeps
    float32 input and output, so callers pass the same pixels as to the native model.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir(model_dir)))
    if precision == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        if calibration is None:
            raise ValueError("int8 conversion needs calibration images")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.representative_dataset = lambda: ([image] for image in calibration())
    elif precision != "float32":
        raise ValueError(f"unknown TFLite precision {precision!r}")
    destination.write_bytes(converter.convert())
    return destination
