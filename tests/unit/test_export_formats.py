"""The format table and the export record, without converting anything: every format can be
made and run, the record reads back as it was written, a missing format says why."""

from __future__ import annotations

import json

import pytest

from components.common.export_artifact import RECORD_FILE, ExportRecord, FormatRow
from components.common.model_card import ModelCard
from components.export.convert import CONVERTERS
from components.export.runtimes import LOADERS, ExportMissingError, load_exported
from components.spec.export import EXPORT_FORMATS, NATIVE, ExportConfig, always_exported


@pytest.mark.parametrize("name", list(EXPORT_FORMATS))
def test_every_format_has_a_converter_and_a_loader(name):
    runtime = EXPORT_FORMATS[name].runtime
    assert runtime in CONVERTERS, f"{name}: nothing in components/export/convert.py makes it"
    assert runtime in LOADERS, f"{name}: nothing in components/export/runtimes.py runs it"


def test_formats_have_distinct_files_and_name_no_native_format():
    files = [f.file for f in EXPORT_FORMATS.values()]
    assert len(set(files)) == len(files)
    assert NATIVE not in EXPORT_FORMATS


def test_the_formats_always_kept_come_first_and_only_for_their_frameworks():
    config = ExportConfig(formats=["onnx", "saved_model"])
    assert always_exported("keras") == ("saved_model",) and always_exported("transformers") == ()
    assert config.formats_for("keras") == ["saved_model", "onnx"]
    assert ExportConfig(formats=["onnx"]).formats_for("transformers") == ["onnx"]
    assert config.max_drop("onnx") == 0.005 and ExportConfig().max_drop("tflite_int8") == 0.02


def test_an_unknown_format_names_the_table():
    with pytest.raises(ValueError, match="use any of " + ", ".join(EXPORT_FORMATS)):
        ExportConfig(formats=["coreml"])


def record(*rows: FormatRow) -> ExportRecord:
    native = FormatRow(format=NATIVE, runtime="Keras", precision="float32", passed=True)
    return ExportRecord(
        model="m",
        framework="keras",
        input="pixels",
        input_size=[8, 8],
        channels=1,
        test_images=3,
        calibration_images=2,
        cpu="cpu, 2 cores",
        formats=[native, *rows],
    )


def onnx_row(passed: bool) -> FormatRow:
    return FormatRow(
        format="onnx",
        file="model.onnx",
        runtime="ONNX Runtime",
        precision="float32",
        max_accuracy_drop=0.005,
        passed=passed,
        reason=None if passed else "conversion failed: RuntimeError: no",
    )


def test_the_record_lists_passed_and_failed_on_disk_and_reads_back_the_same(tmp_path):
    written = record(onnx_row(False))
    written.write(tmp_path)
    on_disk = json.loads((tmp_path / RECORD_FILE).read_text())
    assert on_disk["passed"] == [] and on_disk["failed"] == ["onnx"]
    assert "reason" not in on_disk["formats"][0] and "accuracy" not in on_disk["formats"][1]
    assert ExportRecord.read(tmp_path) == written


def test_a_missing_format_says_why_its_export_failed(tmp_path):
    card = ModelCard(
        framework="keras",
        name="m",
        seed=0,
        class_names=["a", "b"],
        input_size=(8, 8),
        channels=1,
        preprocessing="raw",
    )
    with pytest.raises(ExportMissingError, match="add onnx to export.formats"):
        load_exported(tmp_path, "onnx", card)
    record(onnx_row(False)).write(tmp_path)
    with pytest.raises(ExportMissingError, match=r"its export failed \(conversion failed"):
        load_exported(tmp_path, "onnx", card)
