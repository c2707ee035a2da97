"""The track tasks are compiled in only when the experiment sets a tracking URI, never cached,
and the URI defaults from MLFLOW_TRACKING_URI when the experiment is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.config import ConfigError, load_experiment
from pipelines.targets import get_target


def compiled_tasks(tmp_path: Path, *overrides: str) -> dict:
    experiment = load_experiment("digits", list(overrides))
    package = get_target("local", experiment).compile(tmp_path / "pipeline.yaml")
    spec = yaml.safe_load(package.read_text())
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
