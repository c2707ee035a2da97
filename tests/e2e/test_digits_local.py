"""The digits experiment end to end through kfp.local, as `make run` runs it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from components.register.champion import champion_version
from components.register.folders import versions
from components.register.run import champion_decision, read_record
from pipelines.cli import EXIT_GATE, main
from pipelines.config import load_experiment
from pipelines.targets.base import RunOptions
from pipelines.targets.local import LocalTarget

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def first_run(runs_dir: Path) -> dict:
    experiment = load_experiment("digits")
    return LocalTarget(experiment, RunOptions(runs_dir=runs_dir)).run()


def test_every_step_succeeds(first_run: dict) -> None:
    assert first_run["status"] == "SUCCEEDED", first_run["error"]
    steps = {t["name"]: t["status"] for t in first_run["tasks"]}
    for step in ("ingest", "train", "evaluate", "compare", "gate", "register-local"):
        assert steps.get(step) == "SUCCESS", steps
    assert all(t["seconds"] > 0 for t in first_run["tasks"] if t["name"] in ("ingest", "train"))


def test_accuracy_comes_from_the_saved_predictions(first_run: dict) -> None:
    best = first_run["summary"]["best"]
    assert best["metrics"]["accuracy"] >= 0.95
    evaluate_dir = Path(best["model_uri"]).parent.parent / "evaluate"
    predictions = np.load(evaluate_dir / "predictions" / "predictions.npz")
    recomputed = float(
        (predictions["probabilities"].argmax(axis=1) == predictions["labels"]).mean()
    )
    assert recomputed == pytest.approx(best["metrics"]["accuracy"], abs=1e-6)
    info = json.loads(
        (Path(first_run["run_dir"]) / "ingest" / "dataset" / "dataset_info.json").read_text()
    )
    assert len(predictions["labels"]) == info["num_examples"]["test"] > 100
    assert len(set(predictions["keys"].tolist())) == len(predictions["keys"])


def test_artifacts_on_disk(first_run: dict) -> None:
    run_dir = Path(first_run["run_dir"])
    dataset = run_dir / "ingest" / "dataset"
    info = json.loads((dataset / "dataset_info.json").read_text())
    assert info["class_names"] == [str(d) for d in range(10)]
    assert info["seen"] == info["kept"] + info["quarantined"] == 1797
    for split in ("train", "validation", "test"):
        assert list(dataset.glob(f"{split}-00000-of-*.tfrecord"))
    model = Path(first_run["summary"]["best"]["model_uri"])
    card = json.loads((model / "model_card.json").read_text())
    assert card["framework"] == "keras" and card["class_names"] == info["class_names"]
    assert (model / "keras" / "model.keras").is_file()
    assert (model / "keras" / "saved_model" / "saved_model.pb").is_file()
    evaluate_dir = model.parent.parent / "evaluate"
    assert "Confusion matrix" in (evaluate_dir / "report").read_text()
    assert json.loads((evaluate_dir / "metrics").read_text())["accuracy"] == pytest.approx(
        card and first_run["summary"]["best"]["metrics"]["accuracy"]
    )
    assert "small-cnn" in (run_dir / "compare" / "table").read_text()
    reports = {Path(p).relative_to(run_dir).as_posix() for p in first_run["reports"]}
    assert reports == {
        "data.html",
        "curves-small-cnn-seed0.html",
        "evaluation-small-cnn-seed0.html",
        "comparison.html",
    }
    assert "Confusion matrix" in (run_dir / "evaluation-small-cnn-seed0.html").read_text()


def test_best_model_is_registered(first_run: dict, runs_dir: Path) -> None:
    record = first_run["registration"]
    assert record["version"] == "v1"
    version_dir = runs_dir / "registry" / "digits-classifier" / "v1"
    assert (version_dir / "model" / "model_card.json").is_file()
    assert (
        json.loads((version_dir / "registration.json").read_text())["metrics"]["accuracy"] >= 0.95
    )


def test_second_run_hits_the_cache(first_run: dict, runs_dir: Path) -> None:
    again = LocalTarget(load_experiment("digits"), RunOptions(runs_dir=runs_dir)).run()
    steps = {t["name"]: t["status"] for t in again["tasks"]}
    assert steps["ingest"] == steps["train"] == steps["evaluate"] == "CACHED"
    assert again["summary"]["best"] == first_run["summary"]["best"]
    assert again["registration"]["version"] == "v1"  # the same model is not registered twice
    # a fully cached run still has its own folder with every report it reports
    assert again["run_dir"] != first_run["run_dir"]
    assert [Path(p).name for p in again["reports"]] == [Path(p).name for p in first_run["reports"]]
    assert all(Path(p).is_file() for p in again["reports"])
    assert (runs_dir / "digits" / "latest").resolve() == Path(again["run_dir"]).resolve()


def test_missed_gate_registers_nothing(
    first_run: dict, runs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "--experiment",
            "digits",
            "--runs-dir",
            str(runs_dir),
            "--json",
            "--set",
            "models.0.epochs=1",
            "--set",
            "models.0.name=one-epoch",
            "--set",
            "gate.min=0.995",
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert code == EXIT_GATE
    assert result["status"] == "GATE MISSED"
    assert result["summary"]["gate"]["passed"] is False
    assert "below the minimum 0.9950 by" in result["summary"]["gate"]["message"]
    assert "register-local" not in {t["name"] for t in result["tasks"]}
    assert result["registration"] is None
    registered = versions(runs_dir / "registry" / "digits-classifier")
    assert [p.name for p in registered] == ["v1"]


def test_a_worse_run_is_registered_but_not_promoted(
    first_run: dict, runs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = runs_dir / "registry" / "digits-classifier"
    assert champion_version(root) == root / "v1"
    code = main(
        [
            "--experiment",
            "digits",
            "--runs-dir",
            str(runs_dir),
            "--set",
            "models.0.epochs=1",
            "--set",
            "models.0.name=one-epoch",
            "--set",
            "gate.min=0.05",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    record = read_record(versions(root)[-1])
    decision = champion_decision(record)
    assert record.version != "v1" and decision is not None and not decision.promoted
    assert decision.champion == "v1" and decision.test_images > 300
    accuracy = decision.checks[0]
    assert accuracy.check == "accuracy" and accuracy.high < -0.01
    assert decision.reason.startswith(f"accuracy {accuracy.challenger:.2%} vs the champion v1's")
    assert decision.reason.endswith("the champion stays v1")
    # registered, the champion unchanged, and the console says so in those words
    assert champion_version(root) == root / "v1"
    assert f"registered: digits-classifier {record.version} at" in printed
    assert f"  not promoted: {decision.reason}" in printed.splitlines()
