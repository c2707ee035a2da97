"""The export step on a tiny trained model: every format converted, run with its own runtime on
the test split, and gated on its accuracy drop; predict with any format."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from components.spec import DataConfig, ModelSpec
from components.spec.export import EXPORT_FORMATS, ExportConfig

ALL_FORMATS = [f for f in EXPORT_FORMATS if f != "saved_model"]
FLOAT_FORMATS = [f.name for f in EXPORT_FORMATS.values() if f.precision == "float"]
INT8_FORMATS = [f.name for f in EXPORT_FORMATS.values() if f.precision == "int8"]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """sklearn digits (8x8 grey, 10 classes, 180 test images) and a small CNN trained on it."""
    from components.ingest.run import ingest
    from components.train.run import train

    root = tmp_path_factory.mktemp("digits")
    ingest(
        DataConfig(source="sklearn:digits", image_size=(8, 8), channels=1),
        root / "dataset",
        root / "quarantine.csv",
    )
    spec = ModelSpec(
        name="digits-cnn",
        architecture="small_cnn",
        epochs=8,
        batch_size=32,
        params={"filters": 8},
        optimizer={"learning_rate": 0.003},
    )
    train(
        root / "dataset",
        spec,
        0,
        root / "model",
        root / "curves.html",
        root / "checkpoints",
    )
    return root


@pytest.fixture(scope="module")
def exported(digits):
    from components.export.run import export_model

    config = ExportConfig(formats=ALL_FORMATS)
    record = export_model(
        digits / "model", digits / "dataset", digits / "export", config, digits / "report.html"
    )
    return record


def rows(record):
    return {row["format"]: row for row in record["formats"]}


def test_every_format_is_measured_against_the_original(exported, digits):
    table = rows(exported)
    assert list(table) == ["native", "saved_model", *ALL_FORMATS]
    native = table["native"]
    assert native["accuracy"] > 0.8, "the tiny model must have learned digits"
    assert exported["test_images"] > 100
    for name in FLOAT_FORMATS:
        assert table[name]["agreement"] >= 0.99, name
        assert table[name]["passed"], table[name]
    for name in INT8_FORMATS:
        drop = native["accuracy"] - table[name]["accuracy"]
        assert drop <= ExportConfig().max_accuracy_drop.int8, (name, drop)
        assert table[name]["passed"]
    for name in ["saved_model", *ALL_FORMATS]:
        row = table[name]
        assert row["size_bytes"] > 0 and row["latency_ms_p90"] >= row["latency_ms_p50"] > 0
        assert row["throughput"] > 0
        assert (digits / "export" / row["file"]).exists()
    assert exported["passed"] == ["saved_model", *ALL_FORMATS] and exported["failed"] == []
    assert json.loads((digits / "export" / "export.json").read_text()) == exported
    html = (digits / "report.html").read_text()
    assert "<table>" in html and "<img" in html and "tflite_int8" in html


def test_int8_files_are_smaller_than_float32(exported):
    table = rows(exported)
    assert table["tflite_int8"]["size_bytes"] < table["tflite"]["size_bytes"]


@pytest.mark.parametrize("name", ["saved_model", *ALL_FORMATS])
def test_exported_graphs_take_the_native_models_raw_pixels(exported, digits, name):
    from components.common.model_card import ModelCard
    from components.export.runtimes import load_exported
    from components.models.loading import load_classifier

    card = ModelCard.load(digits / "model")
    images = np.random.default_rng(0).uniform(0, 16 * 16, (7, 8, 8, 1)).clip(0, 255)
    images = images.astype(np.float32)
    native = load_classifier(digits / "model").predict(images)
    probabilities = load_exported(digits / "export", name, card).predict(images)
    assert probabilities.shape == native.shape
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-2)
    if EXPORT_FORMATS[name].precision == "float":
        np.testing.assert_allclose(probabilities, native, atol=2e-3)


def test_a_format_over_its_accuracy_budget_fails_and_is_not_kept(digits, tmp_path, monkeypatch):
    """Calibrating int8 on black images collapses the activation ranges: int8 loses accuracy."""
    from components.export import measure
    from components.export.run import export_model

    first_images = measure.first_images

    def black_calibration(dataset_dir, card, split, count):
        images = first_images(dataset_dir, card, split, count)
        return np.zeros_like(images) if split == "train" else images

    monkeypatch.setattr(measure, "first_images", black_calibration)
    config = ExportConfig(formats=["onnx", "tflite_int8"], calibration_images=8)
    record = export_model(digits / "model", digits / "dataset", tmp_path / "export", config)
    table = rows(record)
    assert table["onnx"]["passed"] and not table["tflite_int8"]["passed"]
    assert "max_accuracy_drop.int8" in table["tflite_int8"]["reason"]
    assert record["failed"] == ["tflite_int8"]
    assert (tmp_path / "export" / "model.onnx").is_file()
    assert not (tmp_path / "export" / "model_int8.tflite").exists()


def tiny_transformers_model(folder: Path, checkpoint: Path) -> Path:
    """A transformers Model artifact (hf/ and its card) of an untrained tiny ConvNeXt V2."""
    from components.common.model_card import ModelCard
    from components.models.transformers import Preprocessing, load_processor_config

    shutil.copytree(checkpoint, folder / "hf")
    preprocessing = Preprocessing.from_processor_config(load_processor_config(str(checkpoint)))
    ModelCard(
        framework="transformers",
        name="tiny",
        seed=0,
        class_names=[f"c{i}" for i in range(5)],
        **preprocessing.card_fields(),
    ).save(folder)
    return folder


def test_transformers_model_exports_to_onnx_with_its_preprocessing_inside(
    tmp_path, tiny_hf_checkpoint
):
    from components.export.convert import convert
    from components.export.runtimes import load_exported
    from components.models.loading import load_classifier

    checkpoint = tiny_hf_checkpoint(tmp_path / "checkpoint", "convnextv2")
    model_dir = tiny_transformers_model(tmp_path / "model", checkpoint)
    native = load_classifier(model_dir)
    height, width = native.card.input_size
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (6, height, width, 3)).astype(np.float32)
    calibration = rng.uniform(0, 255, (16, height, width, 3)).astype(np.float32)
    (tmp_path / "export").mkdir()
    for name in ("onnx", "onnx_int8"):
        convert(
            name, native, model_dir, tmp_path / "export" / EXPORT_FORMATS[name].file, calibration
        )
    onnx = load_exported(tmp_path / "export", "onnx", native.card).predict(images)
    # the crop and ImageNet mean/std happen inside the graph: raw pixels in, same answer out
    np.testing.assert_allclose(onnx, native.predict(images), atol=1e-4)
    int8 = load_exported(tmp_path / "export", "onnx_int8", native.card).predict(images)
    assert int8.shape == onnx.shape
    np.testing.assert_allclose(int8.sum(axis=1), 1.0, atol=1e-5)  # the softmax stays float


def test_the_export_step_measures_a_transformers_model_on_the_test_split(
    tmp_path, tiny_hf_checkpoint, image_dataset
):
    from components.export.run import export_model

    checkpoint = tiny_hf_checkpoint(tmp_path / "checkpoint", "convnextv2")
    model_dir = tiny_transformers_model(tmp_path / "model", checkpoint)
    levels = {f"c{i}": 30 + 45 * i for i in range(5)}
    dataset = image_dataset(tmp_path, levels, 12, (36, 36), validation=0.2, test=0.3)

    record = export_model(model_dir, dataset, tmp_path / "export", ExportConfig(formats=["onnx"]))

    table = rows(record)
    assert list(table) == ["native", "onnx"]
    assert table["native"]["runtime"] == "PyTorch" and table["onnx"]["runtime"] == "ONNX Runtime"
    info = json.loads((dataset / "dataset_info.json").read_text())
    assert record["test_images"] == info["num_examples"]["test"] > 0
    assert table["onnx"]["agreement"] >= 0.99 and table["onnx"]["passed"]
    assert (tmp_path / "export" / "model.onnx").is_file()


def test_transformers_to_tflite_is_a_config_error():
    with pytest.raises(ValueError, match="transformers models export to onnx, onnx_int8"):
        ExportConfig(formats=["tflite"]).formats_for("transformers")


# --- the experiment file --------------------------------------------------------------------


def write_experiment(tmp_path: Path, export: dict, framework: str = "transformers") -> Path:
    import yaml

    model = (
        {"name": "vit", "framework": "transformers", "checkpoint": "google/vit-base-patch16-224"}
        if framework == "transformers"
        else {"name": "cnn", "architecture": "small_cnn"}
    )
    path = tmp_path / "experiment.yaml"
    path.write_text(
        yaml.safe_dump({"data": {"source": "sklearn:digits"}, "models": [model], "export": export})
    )
    return path


@pytest.mark.parametrize(
    ("export", "framework", "message"),
    [
        ({"formats": ["onnx", "tflite_int8"]}, "transformers", "cannot be made from transformers"),
        ({"formats": ["onnx", "coreml"]}, "keras", "unknown export format(s) 'coreml'"),
        ({"max_accuracy_drop": {"int8": 2}}, "keras", "max_accuracy_drop.int8"),
    ],
)
def test_bad_export_section_exits_2(tmp_path, capsys, export, framework, message):
    from pipelines.cli import main

    path = write_experiment(tmp_path, export, framework)
    assert main(["--experiment", str(path), "--compile-only", str(tmp_path / "x.yaml")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_export_section_reads_float_and_int8_budgets(tmp_path):
    from pipelines.config import load_experiment

    path = write_experiment(
        tmp_path,
        {
            "formats": ["onnx_int8"],
            "max_accuracy_drop": {"float": 0.001, "int8": 0.03},
            "calibration_images": 50,
        },
        "keras",
    )
    export = load_experiment(str(path)).export
    assert export is not None
    assert export.formats_for("keras") == ["saved_model", "onnx_int8"]
    assert export.max_drop("onnx_int8") == 0.03 and export.max_drop("saved_model") == 0.001
    assert export.calibration_images == 50


# --- registered with the model, predicted with any format -----------------------------------


@pytest.fixture(scope="module")
def version(exported, digits, tmp_path_factory):
    from components.register.run import register_local

    registry = tmp_path_factory.mktemp("registry")
    record = register_local(
        digits / "model", registry, "digits", {"accuracy": 1.0}, export_dir=digits / "export"
    )
    return Path(record.path)


def test_registered_version_holds_the_passing_exports_and_the_card_lists_them(version, exported):
    from components.common.files import read_json

    card = read_json(version / "model_card.json")
    listed = {entry["format"]: entry for entry in card["exports"]}
    assert list(listed) == exported["passed"]
    for entry in listed.values():
        assert (version / entry["file"]).exists()
        assert "[0, 255]" in entry["input"] and entry["input_size"] == [8, 8]
    assert (version / "export" / "export.json").is_file()
    assert (version / "export" / "report.html").is_file()
    assert read_json(version / "registration.json")["exports"] == exported["passed"]


def test_a_failed_format_is_not_registered(digits, tmp_path):
    from components.common.files import read_json, write_json
    from components.register.run import register_local

    export_dir = tmp_path / "export"
    shutil.copytree(digits / "export", export_dir)
    record = read_json(export_dir / "export.json")
    for row in record["formats"]:
        if row["format"] == "onnx_int8":
            row.update(passed=False, reason="loses too much")
    write_json(export_dir / "export.json", record)
    registered = register_local(
        digits / "model", tmp_path / "registry", "digits", {}, export_dir=export_dir
    )
    version = Path(registered.path)
    assert "onnx_int8" not in registered.exports and "onnx" in registered.exports
    assert not (version / "export" / "model_int8.onnx").exists()


def write_digit_images(folder: Path, dataset: Path, count: int) -> list[int]:
    """The first `count` test images of the Dataset as PNG files; their labels."""
    from components.common.dataset import iterate_examples

    folder.mkdir(parents=True, exist_ok=True)
    labels = []
    for index, example in enumerate(iterate_examples(dataset, "test")):
        if index == count:
            break
        (folder / f"{index:03d}.png").write_bytes(example["image"])
        labels.append(example["label"])
    return labels


@pytest.mark.parametrize("name", ["saved_model", *ALL_FORMATS])
def test_predict_with_each_format_gives_the_native_top_k(version, digits, tmp_path, capsys, name):
    from components.predict.cli import main

    write_digit_images(tmp_path / "images", digits / "dataset", 12)

    def top_k(fmt):
        assert (
            main(
                [
                    "--model",
                    str(version),
                    "--format",
                    fmt,
                    "-k",
                    "3",
                    "--json",
                    str(tmp_path / "images"),
                ]
            )
            == 0
        )
        document = json.loads(capsys.readouterr().out)
        assert document["format"] == fmt
        return {r["path"]: r["top"] for r in document["results"]}

    native, other = top_k("native"), top_k(name)
    assert native.keys() == other.keys() and len(native) == 12
    if EXPORT_FORMATS[name].precision == "float":
        for path, top in native.items():
            assert [e["class"] for e in other[path]] == [e["class"] for e in top], (name, path)
            np.testing.assert_allclose(
                [e["probability"] for e in other[path]], [e["probability"] for e in top], atol=2e-3
            )
    else:  # int8 keeps the top class; the order of near-tied runners-up may change
        same = sum(native[p][0]["class"] == other[p][0]["class"] for p in native)
        assert same >= 11, (name, same)


def test_predict_with_a_format_that_was_not_exported(digits, tmp_path, capsys):
    from components.common.files import read_json, write_json
    from components.predict.cli import main
    from components.register.run import register_local

    export_dir = tmp_path / "export"
    shutil.copytree(digits / "export", export_dir)
    record = read_json(export_dir / "export.json")
    record["formats"] = [r for r in record["formats"] if r["format"] in ("native", "onnx")]
    write_json(export_dir / "export.json", record)
    registered = register_local(digits / "model", tmp_path / "r", "d", {}, export_dir=export_dir)
    write_digit_images(tmp_path / "images", digits / "dataset", 1)
    code = main(["--model", registered.path, "--format", "tflite", str(tmp_path / "images")])
    err = capsys.readouterr().err
    assert code == 2 and "no tflite export (exported: onnx)" in err and "Traceback" not in err


def test_the_run_summary_names_the_registered_exports():
    from pipelines.summary import format_result

    registration = {
        "name": "digits",
        "version": "v2",
        "path": "runs/registry/digits/v2",
        "source_model": "runs/x/model",
        "metrics": {"accuracy": 0.98},
        "exports": ["saved_model", "onnx"],
        "registered_at": "2026-01-01T00:00:00+00:00",
    }
    result = {"experiment": "digits", "target": "local", "status": "SUCCEEDED"}
    text = format_result({**result, "registration": registration})
    assert "exported: saved_model, onnx (in runs/registry/digits/v2/export/)" in text
    assert "exported:" not in format_result(
        {**result, "registration": {**registration, "exports": []}}
    )
