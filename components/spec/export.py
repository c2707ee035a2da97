"""The export vocabulary: one record per deployable format, and the export step's config.

`EXPORT_FORMATS` is the only list of format names: the experiment's `export.formats` is
validated against it, the export step converts and the runtimes load by its records' fields,
and the predict and serve CLIs offer its names. A format's record is data only; what converts
to it and what runs it are looked up by its `runtime`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator

from components.spec.base import Strict

# The format name of the original model, run by its own framework, beside the exported ones.
NATIVE = "native"

# The runtimes that run exported files (each also names how the export step makes them).
TENSORFLOW = "TensorFlow"
ONNX_RUNTIME = "ONNX Runtime"
LITERT = "LiteRT"

Precision = Literal["float", "int8"]


@dataclass(frozen=True)
class ExportFormat:
    """One deployable format: its file, the runtime that runs it, what conversion does to it."""

    name: str
    file: str  # file or folder name in the Export artifact and in a registered version's export/
    runtime: str
    dtype: Literal["float32", "float16", "int8"]  # what the conversion stores the weights as
    frameworks: tuple[str, ...]  # the frameworks whose models convert to it
    precision_note: str  # what the conversion does to the weights, in words (record, card)
    always: bool = False  # kept for every model of those frameworks, configured or not

    @property
    def precision(self) -> Precision:
        """The `max_accuracy_drop` entry the format is gated on."""
        return "int8" if self.dtype == "int8" else "float"


# Keras models always keep their SavedModel (the train step writes it); transformers models go
# to ONNX only.
FORMATS: tuple[ExportFormat, ...] = (
    ExportFormat(
        "saved_model", "saved_model", TENSORFLOW, "float32", ("keras",), "float32", always=True
    ),
    ExportFormat(
        "onnx", "model.onnx", ONNX_RUNTIME, "float32", ("keras", "transformers"), "float32"
    ),
    ExportFormat(
        "onnx_int8",
        "model_int8.onnx",
        ONNX_RUNTIME,
        "int8",
        ("keras", "transformers"),
        "int8 weights and activations (static QDQ, calibrated on train images)",
    ),
    ExportFormat("tflite", "model.tflite", LITERT, "float32", ("keras",), "float32"),
    ExportFormat(
        "tflite_float16",
        "model_float16.tflite",
        LITERT,
        "float16",
        ("keras",),
        "float16 weights, float32 compute",
    ),
    ExportFormat(
        "tflite_int8",
        "model_int8.tflite",
        LITERT,
        "int8",
        ("keras",),
        "full-integer int8 ops (calibrated on train images), float32 input/output",
    ),
)
EXPORT_FORMATS: dict[str, ExportFormat] = {f.name: f for f in FORMATS}


def export_formats_for(framework: str) -> tuple[str, ...]:
    """The formats a `framework` model converts to."""
    return tuple(f.name for f in FORMATS if framework in f.frameworks)


def always_exported(framework: str) -> tuple[str, ...]:
    """The formats every `framework` model keeps, whatever `export.formats` says."""
    return tuple(f.name for f in FORMATS if f.always and framework in f.frameworks)


class AccuracyDrop(Strict):
    """Most test accuracy (a fraction, 0.005 = half a point) a format may lose to the original."""

    # `float` is the YAML key; the attribute has another name so it does not shadow the type.
    float_formats: float = Field(default=0.005, ge=0.0, le=1.0, alias="float")
    int8: float = Field(default=0.02, ge=0.0, le=1.0)


class ExportConfig(Strict):
    """Which deployable formats the best model is converted to, and what each may cost."""

    formats: list[str] = Field(
        default_factory=lambda: ["onnx"],
        description="any of "
        + ", ".join(EXPORT_FORMATS)
        + " ("
        + "; ".join(f"{f.name}: always, for {', '.join(f.frameworks)}" for f in FORMATS if f.always)
        + ")",
    )
    max_accuracy_drop: AccuracyDrop = AccuracyDrop()
    calibration_images: int = Field(
        default=200, ge=1, le=100_000, description="train images that calibrate int8 formats"
    )

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, formats: list[str]) -> list[str]:
        unknown = [f for f in formats if f not in EXPORT_FORMATS]
        if unknown:
            raise ValueError(
                f"unknown export format(s) {', '.join(map(repr, unknown))}; "
                f"use any of {', '.join(EXPORT_FORMATS)}"
            )
        if len(set(formats)) != len(formats):
            raise ValueError("export formats must be distinct")
        return formats

    def unsupported(self, framework: str) -> list[str]:
        """The configured formats a `framework` model cannot be exported to."""
        return [f for f in self.formats if framework not in EXPORT_FORMATS[f].frameworks]

    def formats_for(self, framework: str) -> list[str]:
        """What a `framework` model is exported to: the formats that are always kept first."""
        missing = self.unsupported(framework)
        if missing:
            raise ValueError(
                f"a {framework} model cannot be exported to {', '.join(missing)}; "
                f"{framework} models export to {', '.join(export_formats_for(framework))}"
            )
        always = list(always_exported(framework))
        return always + [f for f in self.formats if f not in always]

    def max_drop(self, name: str) -> float:
        drop = self.max_accuracy_drop
        return drop.int8 if EXPORT_FORMATS[name].precision == "int8" else drop.float_formats
