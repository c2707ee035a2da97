"""Run an exported file with its own runtime behind the `Classifier` interface.

`load_exported(export_dir, format, card).predict(images)` takes what the native classifier
takes (float32 NHWC [0, 255] of the card's input size) and returns class probabilities, so
evaluation, the export measurements and the predict CLI treat every format alike. The format's
record names its file and its runtime, and the runtime picks the loader (`LOADERS`);
`load_version_export` finds the file in a registered version's export/ folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from components.common.export_artifact import INPUT_NAME, RECORD_FILE, VERSION_DIR, ExportRecord
from components.common.model_card import ModelCard
from components.spec.export import EXPORT_FORMATS, LITERT, ONNX_RUNTIME, TENSORFLOW


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, where the OS reports one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    count = os.cpu_count()
    return count if count is not None else 1


class ExportMissingError(FileNotFoundError):
    """The requested format was not exported (or failed its accuracy check)."""


class OnnxClassifier:
    def __init__(self, path: Path, card: ModelCard, threads: int = 0):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: one per core
        # Idle threads wait instead of spinning: on a CPU shared with other work, spinning
        # threads take turns with it and batch-1 latency jumps by an order of magnitude.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.card = card
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def predict(self, images: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(images, dtype=np.float32)
        return np.asarray(self.session.run(None, {INPUT_NAME: batch})[0], dtype=np.float32)


def _tflite_interpreter(path: Path, threads: int) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # TensorFlow bundles the same interpreter
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter(model_path=str(path), num_threads=threads if threads > 0 else usable_cores())


class TFLiteClassifier:
    """A TFLite flatbuffer; the input tensor is resized whenever the batch size changes."""

    def __init__(self, path: Path, card: ModelCard, threads: int = 0):
        self.card = card
        self.interpreter = _tflite_interpreter(path, threads)
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.batch = -1

    def predict(self, images: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(images, dtype=np.float32)
        if batch.shape[0] != self.batch:
            self.interpreter.resize_tensor_input(self.input["index"], list(batch.shape))
            self.interpreter.allocate_tensors()
            self.batch = batch.shape[0]
        self.interpreter.set_tensor(self.input["index"], batch)
        self.interpreter.invoke()
        return np.array(self.interpreter.get_tensor(self.output["index"]), dtype=np.float32)


class SavedModelClassifier:
    """The SavedModel's `serve` signature (what TensorFlow Serving and Vertex run)."""

    def __init__(self, path: Path, card: ModelCard, threads: int = 0):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        self.card = card
        # keep the loaded object: its variables live as long as it does
        self.loaded = tf.saved_model.load(str(path))
        self.serve = self.loaded.serve

    def predict(self, images: np.ndarray) -> np.ndarray:
        output = self.serve(np.ascontiguousarray(images, dtype=np.float32))
        if isinstance(output, dict):
            (output,) = output.values()
        return np.asarray(output, dtype=np.float32)


# runtime -> what runs a file (components/export/convert.py: what makes it)
LOADERS: dict[str, Callable[[Path, ModelCard, int], Any]] = {
    TENSORFLOW: SavedModelClassifier,
    ONNX_RUNTIME: OnnxClassifier,
    LITERT: TFLiteClassifier,
}


def load_exported(export_dir: str | Path, name: str, card: ModelCard, threads: int = 0) -> Any:
    """The `name` format's file in `export_dir` as a classifier; raises ExportMissingError
    when the folder does not hold it."""
    export_dir = Path(export_dir)
    form = EXPORT_FORMATS[name]
    path = export_dir / form.file
    if not path.exists():
        present = [f.name for f in EXPORT_FORMATS.values() if (export_dir / f.file).exists()]
        raise ExportMissingError(
            f"{path} does not exist: this model has no {name} export (exported: "
            f"{', '.join(present) or 'none'}); {_missing_advice(export_dir, name)}"
        )
    return LOADERS[form.runtime](path, card, threads)


def load_version_export(
    version_dir: str | Path, name: str, card: ModelCard, threads: int = 0
) -> Any:
    """The `name` format a registered version keeps (in its export/ folder) as a classifier;
    raises ExportMissingError with what to do when it keeps none."""
    export_dir = Path(version_dir) / VERSION_DIR
    if not export_dir.is_dir():
        raise ExportMissingError(
            f"{version_dir} has no {VERSION_DIR}/ folder: the {name} format needs a registered "
            "version of an experiment with an export section (export.formats)"
        )
    return load_exported(export_dir, name, card, threads)


def _missing_advice(export_dir: Path, name: str) -> str:
    """What to do about a missing format: its export failure when the record has one."""
    row = None
    if (export_dir / RECORD_FILE).is_file():
        try:
            record = ExportRecord.read(export_dir)
            row = next((r for r in record.exported if r.format == name), None)
        except ValueError:  # not a record this version can read: give the general advice
            pass
    if row is not None and not row.passed:
        return f"its export failed ({row.reason})"
    return f"add {name} to export.formats and rerun"
