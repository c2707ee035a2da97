"""The local folder registry: versions, contents, idempotence, atomic claims."""

from __future__ import annotations

import json

import pytest

import components.register.run as registry
from components.common.export_artifact import ExportRecord, FormatRow
from components.register.folders import versions
from components.register.run import register_local


def make_model(folder, name="small-cnn", seed=0):
    (folder / "keras").mkdir(parents=True)
    (folder / "keras" / "model.keras").write_bytes(b"weights")
    card = {"framework": "keras", "name": name, "seed": seed, "dataset_fingerprint": "abc"}
    (folder / "model_card.json").write_text(json.dumps(card))
    return folder


def test_first_version_holds_model_card_metrics_and_record(tmp_path):
    model = make_model(tmp_path / "model-a")
    record = register_local(
        model, tmp_path / "registry", "digits", {"accuracy": 0.97}, ["staging"], {"seed": 0}
    )
    version = tmp_path / "registry" / "digits" / "v1"
    assert record.version == "v1" and record.path == str(version)
    assert (version / "model" / "keras" / "model.keras").read_bytes() == b"weights"
    assert json.loads((version / "model_card.json").read_text())["name"] == "small-cnn"
    assert json.loads((version / "metrics.json").read_text()) == {"accuracy": 0.97}
    stored = json.loads((version / "registration.json").read_text())
    assert stored == record.model_dump(mode="json")
    assert stored["aliases"] == ["staging"] and stored["details"] == {"seed": 0}
    assert stored["model_name"] == "small-cnn" and stored["dataset_fingerprint"] == "abc"
    assert [p.name for p in (tmp_path / "registry" / "digits").iterdir()] == [
        "v1"
    ]  # no staging left


def test_same_model_registers_once_and_new_models_get_new_versions(tmp_path):
    root = tmp_path / "registry"
    a = make_model(tmp_path / "model-a")
    b = make_model(tmp_path / "model-b", seed=1)
    first = register_local(a, root, "digits", {"accuracy": 0.9})
    again = register_local(a, root, "digits", {"accuracy": 0.9})
    second = register_local(b, root, "digits", {"accuracy": 0.95})
    assert again == first.model_copy(update={"existing": True})  # the same version, found
    assert second.version == "v2"
    assert [p.name for p in versions(root / "digits")] == ["v1", "v2"]


def test_version_numbers_are_never_reused(tmp_path):
    root = tmp_path / "registry"
    (root / "digits" / "v7").mkdir(parents=True)  # e.g. left by hand, without a record
    record = register_local(make_model(tmp_path / "m"), root, "digits", {})
    assert record.version == "v8"


def test_a_version_taken_meanwhile_is_skipped(tmp_path, monkeypatch):
    root = tmp_path / "registry"
    register_local(make_model(tmp_path / "a"), root, "digits", {})
    numbers = iter([1, 2])  # another registration "took" v1 between our look and our rename
    monkeypatch.setattr(registry, "next_version_number", lambda _root: next(numbers))
    record = register_local(make_model(tmp_path / "b"), root, "digits", {})
    assert record.version == "v2"
    assert sorted(p.name for p in (root / "digits").iterdir()) == ["v1", "v2"]
    assert json.loads((root / "digits" / "v1" / "registration.json").read_text())[
        "source_model"
    ].endswith("a")


def test_not_a_model_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a Model artifact"):
        register_local(tmp_path, tmp_path / "registry", "digits", {})


def with_classes(folder, classes, seed=0):
    model = make_model(folder, seed=seed)
    card = json.loads((model / "model_card.json").read_text())
    (model / "model_card.json").write_text(json.dumps({**card, "class_names": classes}))
    return model


def test_a_version_with_other_classes_is_refused(tmp_path):
    root = tmp_path / "registry"
    register_local(with_classes(tmp_path / "a", [str(i) for i in range(10)]), root, "digits", {})
    two = with_classes(tmp_path / "b", ["0", "1"], seed=1)
    with pytest.raises(registry.ClassChangeError) as caught:
        register_local(two, root, "digits", {})
    message = str(caught.value)
    assert "v1 predicts 10 classes and this model 2" in message
    assert "gone: 2, 3, 4, 5, 6, 7, 8, 9" in message
    assert "register.name" in message and "register.allow_class_change: true" in message
    assert [p.name for p in versions(root / "digits")] == ["v1"]  # nothing written


def test_reordered_classes_are_a_change_too(tmp_path):
    root = tmp_path / "registry"
    register_local(with_classes(tmp_path / "a", ["cat", "dog"]), root, "pets", {})
    with pytest.raises(registry.ClassChangeError, match="same names in another order"):
        register_local(with_classes(tmp_path / "b", ["dog", "cat"], seed=1), root, "pets", {})


def test_same_classes_and_allowed_changes_register(tmp_path):
    root = tmp_path / "registry"
    register_local(with_classes(tmp_path / "a", ["cat", "dog"]), root, "pets", {})
    same = register_local(with_classes(tmp_path / "b", ["cat", "dog"], seed=1), root, "pets", {})
    assert same.version == "v2"
    three = with_classes(tmp_path / "c", ["bird", "cat", "dog"], seed=2)
    allowed = register_local(three, root, "pets", {}, allow_class_change=True)
    assert allowed.version == "v3"
    # the latest version now has three classes: the next two-class model is the change
    with pytest.raises(registry.ClassChangeError, match="gone: bird"):
        register_local(with_classes(tmp_path / "d", ["cat", "dog"], seed=3), root, "pets", {})


def write_export(folder, formats):
    """An export step's artifact in which `formats` passed (one small file each)."""
    folder.mkdir(parents=True)
    rows = [FormatRow(format="native", runtime="Keras", precision="float32", passed=True)]
    for name in formats:
        (folder / f"model-{name}.bin").write_bytes(name.encode())
        rows.append(
            FormatRow(
                format=name,
                passed=True,
                file=f"model-{name}.bin",
                runtime="LiteRT",
                precision="int8",
                accuracy=0.9,
                accuracy_delta=-0.01,
                size_bytes=len(name),
            )
        )
    ExportRecord(
        model="small-cnn",
        framework="keras",
        input="[0, 255]",
        input_size=[8, 8],
        channels=1,
        test_images=10,
        calibration_images=10,
        cpu="test",
        formats=rows,
    ).write(folder)
    (folder / "report.html").write_text("<html></html>")
    return folder


def test_exports_added_later_make_a_new_version_of_the_same_model(tmp_path):
    root = tmp_path / "registry"
    model = make_model(tmp_path / "model")
    first = register_local(model, root, "digits", {"accuracy": 0.9})
    assert first.exports == [] and not (root / "digits" / "v1" / "export").exists()

    # the experiment gains export.formats; export runs; the same best model is registered
    exported = write_export(tmp_path / "export", ["tflite_int8"])
    second = register_local(model, root, "digits", {"accuracy": 0.9}, export_dir=exported)

    assert second.version == "v2" and second.exports == ["tflite_int8"]
    assert second.same_model_as == "v1" and not second.existing
    assert (root / "digits" / "v2" / "export" / "model-tflite_int8.bin").is_file()
    card = json.loads((root / "digits" / "v2" / "model_card.json").read_text())
    assert [entry["format"] for entry in card["exports"]] == ["tflite_int8"]
    assert not (root / "digits" / "v1" / "export").exists()  # a version is never changed

    again = register_local(model, root, "digits", {"accuracy": 0.9}, export_dir=exported)
    assert again.version == "v2" and again.existing  # nothing new: the same version
    without = register_local(model, root, "digits", {"accuracy": 0.9})
    assert without.version == "v2" and without.existing


def test_the_summary_says_whether_the_version_is_new(tmp_path):
    from pipelines.summary import format_result

    model = make_model(tmp_path / "model")
    root = tmp_path / "registry"
    first = register_local(model, root, "digits", {})
    exported = write_export(tmp_path / "export", ["onnx"])
    second = register_local(model, root, "digits", {}, export_dir=exported)
    again = register_local(model, root, "digits", {}, export_dir=exported)

    def line(record):
        result = {"experiment": "digits", "target": "local", "status": "SUCCEEDED"}
        text = format_result({**result, "registration": record.to_output()})
        return next(x for x in text.splitlines() if x.startswith("registered:"))

    assert line(first) == f"registered: digits v1 at {first.path}"
    assert (
        line(second)
        == f"registered: digits v2 at {second.path} (the model of v1, with this run's exports)"
    )
    assert line(again).endswith("(registered before: the same model and exports)")
