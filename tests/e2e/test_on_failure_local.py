"""compare.on_failure: continue on kfp.local: a candidate that fails to train fails its task
(FAILED, nothing cached), the others are compared, gated and registered (the gate-passed branch
really runs), the run ends PARTIAL with exit code 4, and a rerun trains the failed one again
while the rest comes from the cache with its real time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.cli import main
from pipelines.errors import EXIT_PARTIAL

pytestmark = pytest.mark.e2e


def experiment_file(folder: Path) -> Path:
    weights = folder / "broken.weights.h5"
    weights.write_bytes(b"not an HDF5 file")  # exists, so only training can find it unusable
    experiment = {
        "name": "on-failure",
        "data": {
            "source": "sklearn:digits",
            "image_size": [8, 8],
            "channels": 1,
            "splits": {"validation": 0.1, "test": 0.2},
        },
        "models": [
            {
                "name": "small-cnn",
                "architecture": "small_cnn",
                "epochs": 3,
                "batch_size": 32,
                "optimizer": {"name": "adam", "learning_rate": 3.0e-3},
            },
            {
                "name": "broken",
                "architecture": "mobilenetv3small",
                "weights": str(weights),
                "params": {"input_size": 32},
                "epochs": 1,
            },
        ],
        "gate": {"metric": "accuracy", "min": 0.5},
        "compare": {"on_failure": "continue"},
    }
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(experiment))
    return path


def run(experiment: Path, runs: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    code = main(["--experiment", str(experiment), "--runs-dir", str(runs), "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def test_a_failed_candidate_is_named_and_the_others_are_registered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    experiment = experiment_file(tmp_path)
    code, first, err = run(experiment, tmp_path / "runs", capsys)
    assert code == EXIT_PARTIAL, err[-3000:]
    assert first["status"] == "PARTIAL"
    tasks = {t["label"]: t for t in first["tasks"]}
    assert tasks["train broken seed 0"]["status"] == "FAILURE"
    assert tasks["train small-cnn seed 0"]["status"] == "SUCCESS"
    # the failed training's evaluate never ran: its upstream failed
    assert "evaluate broken seed 0" not in tasks
    failed = first["summary"]["failed"]
    assert [(f["name"], f["seed"]) for f in failed] == [("broken", 0)]
    [line] = first["failed_runs"]
    assert line.startswith("broken seed 0 failed in train: OSError: "), line
    assert [row["name"] for row in first["summary"]["rows"]] == ["small-cnn"]
    # the gate-passed branch ran: the surviving candidate is registered
    registration = first["registration"]
    assert registration["version"] == "v1" and registration["model_name"] == "small-cnn"
    assert Path(registration["path"], "model", "model_card.json").is_file()
    line = next(x for x in err.splitlines() if "train broken seed 0 ... FAILED" in x)
    assert "(the other candidates go on)" in line
    index = Path(first["index"]).read_text()
    head = index[: index.index("<h2>Reports</h2>")]
    assert "PARTIAL" in head and "on-failure-classifier v1" in head
    assert "broken seed 0 failed in train" in head

    code, second, err = run(experiment, tmp_path / "runs", capsys)
    assert code == EXIT_PARTIAL, err[-3000:]
    again = {t["label"]: t for t in second["tasks"]}
    # a failed task is not cached: the failed candidate is trained again
    assert again["train broken seed 0"]["status"] == "FAILURE"
    assert not again["train broken seed 0"]["cached"]
    kept = again["train small-cnn seed 0"]
    assert kept["status"] == "CACHED"
    assert kept["seconds"] == tasks["train small-cnn seed 0"]["seconds"] > 0
    assert "train small-cnn seed 0 ... cached (ran in " in err
