"""The export step: convert the best model to each configured format, measure each file with its
own runtime against the original, keep the formats within their accuracy budget.

The Export artifact holds the passing files (each format's record names its `file`),
`export.json` (the `ExportRecord`: every format, passed or failed, with its figures) and
`report.html`. A format that loses more test accuracy than `max_accuracy_drop` allows, or whose
conversion fails, is in the record with the reason and its file is not kept, so it is never
registered. The test split is predicted as evaluation predicts it (`predict_split`).
"""

from __future__ import annotations

import platform
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from components.common.export_artifact import (
    INPUT_CONTRACT,
    REPORT_FILE,
    ExportRecord,
    FormatRow,
)
from components.common.model_card import ModelCard
from components.export import measure
from components.export.convert import convert
from components.export.runtimes import usable_cores
from components.models.prediction import predict_split
from components.spec.export import EXPORT_FORMATS, NATIVE, ExportConfig

# Accuracy is compared to this many decimals, so an equal accuracy never fails on float noise.
ACCURACY_DECIMALS = 9


def export_model(
    model_dir: str | Path,
    dataset_dir: str | Path,
    export_dir: str | Path,
    config: ExportConfig,
    report_path: str | Path | None = None,
) -> dict[str, Any]:
    """Convert, measure and gate every format; returns the record as export.json holds it."""
    from components.export.report import write_report
    from components.models.loading import load_classifier

    model_dir, export_dir = Path(model_dir), Path(export_dir)
    card = ModelCard.load(model_dir)
    formats = config.formats_for(card.framework)
    export_dir.mkdir(parents=True, exist_ok=True)
    native = load_classifier(model_dir)
    predicted = predict_split(native, dataset_dir, batch_size=measure.EVAL_BATCH, quiet=True)
    test = Measured(
        dataset_dir,
        predicted.labels,
        predicted.probabilities,
        measure.first_images(dataset_dir, card, "test", measure.LATENCY_IMAGES),
    )
    calibration = measure.first_images(dataset_dir, card, "train", config.calibration_images)
    rows = [_native_row(native, model_dir, test)]
    with tempfile.TemporaryDirectory(dir=export_dir, prefix=".convert-") as scratch:
        for name in formats:
            row = _format_row(name, native, model_dir, Path(scratch), calibration, test, config)
            if row.passed:
                file = EXPORT_FORMATS[name].file
                shutil.move(str(Path(scratch) / file), export_dir / file)
            rows.append(row)
            print(_summary_line(row), flush=True)
    record = ExportRecord(
        model=card.name,
        framework=card.framework,
        input=INPUT_CONTRACT,
        input_size=list(card.input_size),
        channels=card.channels,
        test_images=len(test.labels),
        calibration_images=len(calibration),
        cpu=f"{platform.processor() or platform.machine()}, {usable_cores()} cores",
        formats=rows,
    )
    record.write(export_dir)
    write_report(record, export_dir / REPORT_FILE)
    if report_path is not None:
        shutil.copyfile(export_dir / REPORT_FILE, report_path)
    return record.to_output()


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


def _native_row(native: Any, model_dir: Path, test: Measured) -> FormatRow:
    from components.models.keras import KERAS_DIR, MODEL_FILE
    from components.models.transformers import HF_DIR

    framework = native.card.framework
    # the size of what the native runtime loads: the Keras file, or the save_pretrained folder
    native_file = {"keras": f"{KERAS_DIR}/{MODEL_FILE}", "transformers": HF_DIR}[framework]
    speed = measure.speed(native, test.sample)
    return FormatRow(
        format=NATIVE,
        runtime="Keras" if framework == "keras" else "PyTorch",
        precision="float32",
        size_bytes=measure.size_bytes(model_dir / native_file),
        accuracy=test.accuracy,
        accuracy_delta=0.0,
        agreement=1.0,
        latency_ms_p50=speed.latency_ms_p50,
        latency_ms_p90=speed.latency_ms_p90,
        throughput=speed.throughput,
        passed=True,
    )


def _format_row(
    name: str,
    native: Any,
    model_dir: Path,
    scratch: Path,
    calibration: np.ndarray,
    test: Measured,
    config: ExportConfig,
) -> FormatRow:
    """Convert and measure one format; `passed` says whether it stays within its budget."""
    form = EXPORT_FORMATS[name]
    budget = config.max_drop(name)
    described: dict[str, Any] = {
        "format": name,
        "file": form.file,
        "runtime": form.runtime,
        "precision": form.precision_note,
        "max_accuracy_drop": budget,
    }
    try:
        convert(name, native, model_dir, scratch / form.file, calibration)
        measured = _measured(name, scratch / form.file, native.card, test)
    except Exception as exc:  # a format that cannot be made is reported, not fatal
        reason = f"conversion failed: {type(exc).__name__}: {exc}"
        return FormatRow(**described, passed=False, reason=reason)
    drop = round(test.accuracy - measured["accuracy"], ACCURACY_DECIMALS)
    passed = drop <= budget
    return FormatRow(
        **described,
        **measured,
        accuracy_delta=measured["accuracy"] - test.accuracy,
        passed=passed,
        reason=None
        if passed
        else (
            f"loses {drop:.4f} test accuracy, more than max_accuracy_drop."
            f"{form.precision} = {budget:.4f}; not registered"
        ),
    )


def _measured(name: str, path: Path, card: ModelCard, test: Measured) -> dict[str, Any]:
    from components.export.runtimes import load_exported

    exported = load_exported(path.parent, name, card)
    predicted = predict_split(exported, test.dataset_dir, batch_size=measure.EVAL_BATCH, quiet=True)
    return {
        "size_bytes": measure.size_bytes(path),
        "accuracy": measure.accuracy(predicted.labels, predicted.probabilities),
        "agreement": measure.agreement(predicted.probabilities, test.reference),
        **measure.speed(exported, test.sample).as_dict(),
    }


def _summary_line(row: FormatRow) -> str:
    if not row.measured:
        return f"export {row.format}: FAILED, {row.reason}"
    verdict = "ok" if row.passed else f"FAILED, {row.reason}"
    assert row.size_bytes is not None
    return (
        f"export {row.format}: {verdict}, {row.size_bytes / 1e6:.2f} MB, accuracy "
        f"{row.accuracy:.4f} ({row.accuracy_delta:+.4f}), agreement {row.agreement:.4f}, "
        f"p50 {row.latency_ms_p50:.2f} ms, {row.throughput:.0f} images/s at batch "
        f"{measure.THROUGHPUT_BATCH}"
    )
