"""The track tasks are compiled in only when the experiment sets a tracking URI (or, on the
vertex target, gcp.experiment), never cached, and the URI defaults from MLFLOW_TRACKING_URI when
the experiment is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.config import ConfigError, load_experiment
from pipelines.targets import get_target

VERTEX = (
    "gcp.project=my-project",
    "gcp.bucket=gs://my-bucket",
    "gcp.region=europe-west4",
)


def compiled_tasks(tmp_path: Path, *overrides: str, target: str = "local") -> dict:
    experiment = load_experiment("digits", list(overrides))
    package = get_target(target, experiment).compile(tmp_path / "pipeline.yaml")
    spec = next(yaml.safe_load_all(package.read_text()))  # kfp: a platform spec follows
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return tasks


def test_track_tasks_only_with_a_tracking_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert not any(name.startswith("track") for name in compiled_tasks(tmp_path))

    tasks = compiled_tasks(tmp_path, "tracking.mlflow=http://127.0.0.1:5000")
    assert {"track", "track-registration"} <= set(tasks)
    for name in ("track", "track-registration"):
        assert not tasks[name].get("cachingOptions", {}).get("enableCache", False)
    tracking = tasks["track"]["inputs"]["parameters"]["tracking"]["runtimeValue"]["constant"]
    assert tracking["mlflow"] == "http://127.0.0.1:5000"
    assert (tracking["experiment"], tracking["target"]) == ("digits", "local")


def tracking_input(task: dict) -> dict:
    return task["inputs"]["parameters"]["tracking"]["runtimeValue"]["constant"]


def test_vertex_tracks_into_its_experiment_only_with_gcp_experiment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    untracked = compiled_tasks(tmp_path, *VERTEX, target="vertex")
    assert not any(name.startswith("track") for name in untracked)

    tasks = compiled_tasks(tmp_path, *VERTEX, "gcp.experiment=digits-runs", target="vertex")
    assert "track" in tasks
    assert not tasks["track"].get("cachingOptions", {}).get("enableCache", False)
    tracking = tracking_input(tasks["track"])
    assert (tracking["vertex_experiment"], tracking["project"], tracking["location"]) == (
        "digits-runs",
        "my-project",
        "europe-west4",
    )
    assert (tracking["mlflow"], tracking["target"]) == ("", "vertex")
    # the Model Registry gets the version by the upload: nothing to mirror without MLflow
    assert "track-registration" not in tasks
    # with MLflow too, one track step records into both, and MLflow mirrors the version
    tasks = compiled_tasks(
        tmp_path,
        *VERTEX,
        "gcp.experiment=digits-runs",
        "tracking.mlflow=https://mlflow.example.com",
        target="vertex",
    )
    tracking = tracking_input(tasks["track"])
    assert (tracking["mlflow"], tracking["vertex_experiment"]) == (
        "https://mlflow.example.com",
        "digits-runs",
    )
    assert tracking_input(tasks["track-registration"]) == tracking


def test_gcp_experiment_changes_nothing_off_vertex(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for target in ("local", "kfp"):
        tasks = compiled_tasks(tmp_path, *VERTEX, "gcp.experiment=digits-runs", target=target)
        assert not any(name.startswith("track") for name in tasks), target


def test_the_uri_defaults_from_the_environment_at_load_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5001")
    assert load_experiment("digits").tracking.mlflow == "http://127.0.0.1:5001"
    # the file or --set wins, and '' turns tracking off
    assert load_experiment("digits", ["tracking.mlflow="]).tracking.mlflow == ""
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert load_experiment("digits").tracking.mlflow is None


def test_a_uri_without_a_scheme_is_refused() -> None:
    with pytest.raises(ConfigError, match="tracking.mlflow"):
        load_experiment("digits", ["tracking.mlflow=localhost5000"])
