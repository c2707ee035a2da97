"""A digits run (two seeds, one epoch) tracked in a real MLflow server, and the same run with
the server stopped: it still succeeds, with one warning line and a complete results folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from components.common.tracking import WARNING_PREFIX
from pipelines.config import load_experiment
from pipelines.targets.base import RunOptions
from pipelines.targets.local import LocalTarget

pytestmark = pytest.mark.e2e


def run_digits(runs_dir: Path, uri: str) -> dict[str, Any]:
    experiment = load_experiment(
        "digits", ["seeds=[0,1]", "models.0.epochs=1", f"tracking.mlflow={uri}"]
    )
    return LocalTarget(experiment, RunOptions(runs_dir=runs_dir)).run()


def test_a_tracked_run_is_one_parent_and_two_nested_runs(
    mlflow_server: Any, tmp_path: Path
) -> None:
    result = run_digits(tmp_path / "runs", mlflow_server.uri)
    assert result["status"] == "SUCCEEDED", result.get("error")

    client = mlflow_server.client()
    experiment = client.get_experiment_by_name("digits")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("role") == "pipeline"]
    assert len(parents) == 1
    nested = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.data.tags["seed"] for r in nested) == ["0", "1"]
    accuracies = {t["seed"]: t for t in result["summary"]["all_runs"]}
    for run in nested:
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [h.step for h in history] == [1]
        test_accuracy = accuracies[int(run.data.tags["seed"])]["metrics"]["accuracy"]
        assert run.data.metrics["test_accuracy"] == pytest.approx(test_accuracy)


def test_with_the_server_stopped_the_run_succeeds_with_one_warning(
    tmp_path: Path, dead_mlflow_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_digits(tmp_path / "runs", dead_mlflow_uri)

    assert result["status"] == "SUCCEEDED", result.get("error")
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if WARNING_PREFIX in line]
    assert len(warnings) == 1, err
    run_dir = Path(result["run_dir"])
    assert (run_dir / "index.html").is_file()
    assert (run_dir / "comparison.html").is_file()
