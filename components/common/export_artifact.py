"""The Export artifact contract: how every exported graph is called, and its record.

Every exported graph has the native model's interface: one input `image`, float32 NHWC raw
pixels in [0, 255] resized to the card's `input_size`, and one output `probabilities`
(N, classes). Normalisation (keras layers, or a transformers checkpoint's crop, rescale and
mean/std) is inside the graph, and int8 graphs quantise and dequantise inside too, so a
caller never prepares pixels differently for a format. Each format's file name is its record's
`file` in `components/spec/export.py`; `export.json` is an `ExportRecord`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import model_validator

from components.common.files import read_json, write_json
from components.common.results import Result
from components.spec.export import NATIVE

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


class FormatRow(Result):
    """One row of the record: the native model, or an exported format with its figures and
    verdict. A format whose conversion failed has no figures, only the reason."""

    format: str
    file: str | None = None  # exported formats: the name in the Export artifact
    runtime: str
    precision: str  # what the conversion does to the weights, in words
    max_accuracy_drop: float | None = None  # exported formats: the budget it was gated on
    size_bytes: int | None = None
    accuracy: float | None = None
    accuracy_delta: float | None = None  # accuracy - the native model's
    agreement: float | None = None  # share of top-1 answers equal to the native model's
    latency_ms_p50: float | None = None
    latency_ms_p90: float | None = None
    throughput: float | None = None
    passed: bool
    reason: str | None = None  # why it failed

    @property
    def measured(self) -> bool:
        return self.accuracy is not None


class ExportRecord(Result):
    """`export.json`: what the export step measured, every format passed or failed.

    On disk (and as the component's output) it also lists the `passed` and `failed` format
    names; they are derived from the rows, so reading drops them."""

    model: str
    framework: str
    input: str  # the input every exported graph takes (INPUT_CONTRACT)
    input_size: list[int]
    channels: int
    test_images: int
    calibration_images: int
    cpu: str
    formats: list[FormatRow]  # the native model first, then every format tried

    @model_validator(mode="before")
    @classmethod
    def _derived_lists(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if k not in ("passed", "failed")}
        return value

    @property
    def exported(self) -> list[FormatRow]:
        """The rows of the formats tried (all but the native model's)."""
        return [row for row in self.formats if row.format != NATIVE]

    @property
    def passed(self) -> list[str]:
        """The formats within their accuracy budget: the files the Export artifact keeps."""
        return [row.format for row in self.exported if row.passed]

    @property
    def failed(self) -> list[str]:
        return [row.format for row in self.exported if not row.passed]

    def to_output(self) -> dict[str, Any]:
        return {**super().to_output(), "passed": self.passed, "failed": self.failed}

    def write(self, export_dir: str | Path) -> Path:
        return write_json(Path(export_dir) / RECORD_FILE, self.to_output())

    @classmethod
    def read(cls, export_dir: str | Path) -> ExportRecord:
        """The record of the Export artifact (or a version's export/ folder) `export_dir`."""
        return cls.model_validate(read_json(Path(export_dir) / RECORD_FILE))
