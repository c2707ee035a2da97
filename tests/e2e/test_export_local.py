"""The digits experiment with an export section, end to end through kfp.local: the gated best
model is exported, measured, and registered with the formats that passed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.config import load_experiment
from pipelines.targets.base import RunOptions
from pipelines.targets.local import LocalTarget
from pipelines.targets.local.results import EXPORT_REPORT

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    experiment = load_experiment(
        "digits",
        ["models.0.epochs=8", "export.formats=[onnx, tflite_int8]", "export.calibration_images=64"],
    )
    return LocalTarget(experiment, RunOptions(runs_dir=tmp_path_factory.mktemp("runs"))).run()


def test_export_runs_after_the_gate_and_before_registration(run: dict) -> None:
    assert run["status"] == "SUCCEEDED", run["error"]
    names = [t["name"] for t in run["tasks"]]
    assert names.index("gate") < names.index("export") < names.index("register-local")
    assert any(Path(report).name == EXPORT_REPORT for report in run["reports"])


def test_the_registered_version_holds_the_passing_exports(run: dict) -> None:
    registration = run["registration"]
    assert registration["exports"] == ["saved_model", "onnx", "tflite_int8"]
    version = Path(registration["path"])
    record = json.loads((version / "export" / "export.json").read_text())
    assert record["test_images"] > 100 and record["passed"] == registration["exports"]
    card = json.loads((version / "model_card.json").read_text())
    for entry in card["exports"]:
        assert (version / entry["file"]).exists()
        assert entry["input_size"] == [8, 8] and entry["channels"] == 1


def test_exports_added_to_a_registered_model_reach_predict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from components.predict.cli import main as predict

    runs = tmp_path / "runs"
    plain = load_experiment("digits", ["models.0.epochs=8"])
    first = LocalTarget(plain, RunOptions(runs_dir=runs)).run()
    assert first["status"] == "SUCCEEDED", first["error"]
    assert first["registration"]["version"] == "v1" and not first["registration"]["exports"]

    # the same experiment gains an export section: train is cached, the same model is best
    exporting = load_experiment("digits", ["models.0.epochs=8", "export.formats=[tflite_int8]"])
    second = LocalTarget(exporting, RunOptions(runs_dir=runs)).run()
    assert second["status"] == "SUCCEEDED", second["error"]
    registration = second["registration"]
    assert registration["version"] == "v2" and registration["same_model_as"] == "v1"
    assert "tflite_int8" in registration["exports"] and not registration["existing"]

    image = tmp_path / "digit.png"
    from PIL import Image

    Image.new("L", (8, 8), 128).save(image)
    code = predict(
        [
            "--model",
            str(runs / "registry" / "digits-classifier"),
            "--format",
            "tflite_int8",
            str(image),
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
