"""ONNX float -> int8 with ONNX Runtime's static quantisation, calibrated on train images."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from components.common.export_artifact import INPUT_NAME

CALIBRATION_BATCH = 16


def quantize_static(
    float_model: Path, destination: Path, calibration: Iterator[np.ndarray]
) -> Path:
    """QDQ int8 weights (per channel) and activations (MinMax ranges over `calibration`);
    the output softmax is left in float."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
    )
    from onnxruntime.quantization import (
        quantize_static as ort_quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, batches: Iterator[np.ndarray]):
            self.batches = batches

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    import onnx

    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(float_model), str(prepared), skip_symbolic_shape=True)
        # The softmax stays float: quantised, probabilities would come in steps of 1/255.
        softmax = [n.name for n in onnx.load(str(prepared)).graph.node if n.op_type == "Softmax"]
        ort_quantize_static(
            str(prepared),
            str(destination),
            Reader(calibration),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=[name for name in softmax if name],
        )
    return destination
