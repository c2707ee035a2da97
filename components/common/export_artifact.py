"""The Export artifact contract: where each format lives, and how its graph is called.

Every exported graph has the native model's interface: one input `image`, float32 NHWC raw
pixels in [0, 255] resized to the card's `input_size`, and one output `probabilities`
(N, classes). Normalisation (keras layers, or a transformers checkpoint's crop, rescale and
mean/std) is inside the graph, and int8 graphs quantise and dequantise inside too, so a
caller never prepares pixels differently for a format.
"""

from __future__ import annotations

from components.spec import EXPORT_FORMATS

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
INPUT_CONTRACT = (
    "float32 NHWC pixels in [0, 255] resized to input_size (the native model's input); "
    "output: class probabilities"
)
RECORD_FILE = "export.json"
# The folder of a registered version that holds its exports (beside model/).
VERSION_DIR = "export"
REPORT_FILE = "report.html"
ONNX_OPSET = 17

# format -> file (or folder) name inside the Export artifact and a registered version's export/.
FILES: dict[str, str] = {
    "saved_model": "saved_model",
    "onnx": "model.onnx",
    "onnx_int8": "model_int8.onnx",
    "tflite": "model.tflite",
    "tflite_float16": "model_float16.tflite",
    "tflite_int8": "model_int8.tflite",
}
# format -> the runtime that executes it.
RUNTIMES: dict[str, str] = {
    "saved_model": "TensorFlow",
    "onnx": "ONNX Runtime",
    "onnx_int8": "ONNX Runtime",
    "tflite": "LiteRT",
    "tflite_float16": "LiteRT",
    "tflite_int8": "LiteRT",
}
# What the conversion does to the weights, for the model card.
PRECISION_NOTES: dict[str, str] = {
    "saved_model": "float32",
    "onnx": "float32",
    "onnx_int8": "int8 weights and activations (static QDQ, calibrated on train images)",
    "tflite": "float32",
    "tflite_float16": "float16 weights, float32 compute",
    "tflite_int8": "full-integer int8 ops (calibrated on train images), float32 input/output",
}
assert set(FILES) == set(EXPORT_FORMATS) == set(RUNTIMES) == set(PRECISION_NOTES)
