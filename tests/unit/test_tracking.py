"""The tracking interface against a real MLflow tracking server (sqlite, loopback port): the
parent and nested runs, per-epoch metrics, the mirrored registration and its champion alias,
and a dead or wrong server costing one warning line and nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from components.common.model_card import ModelCard
from components.common.results import EvaluationResult, RegistrationRecord
from components.common.tracking import WARNING_PREFIX, Guarded, TrainingRun, open_mlflow
from components.compare.run import MISSING_RESULT, compare
from components.spec.tracking import TrackingSpec
from components.track.run import track_pipeline_run, track_registration

HISTORY = {"loss": [1.2, 0.7, 0.4], "val_accuracy": [0.5, 0.8, 0.9]}


def spec(uri: str, experiment: str) -> TrackingSpec:
    return TrackingSpec(
        mlflow=uri, mlflow_experiment=experiment, experiment="digits", target="local", commit="abc"
    )


def result(root: Path, name: str, seed: int, accuracy: float) -> EvaluationResult:
    model = root / f"train-{name}-{seed}" / "model"
    ModelCard(
        framework="keras",
        name=name,
        seed=seed,
        class_names=["a", "b"],
        input_size=(8, 8),
        channels=3,
        preprocessing="none",
        training={"spec": {"name": name, "epochs": 3, "optimizer": {"name": "adam"}}},
        history={k: [v + seed / 100 for v in values] for k, values in HISTORY.items()},
    ).save(model)
    return EvaluationResult(
        name=name,
        seed=seed,
        framework="keras",
        model_uri=str(model),
        metrics={"accuracy": accuracy, "log_loss": 0.3},
    )


def runs_of(server: Any, experiment: str) -> list[Any]:
    client = server.client()
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment}"
    return list(client.search_runs([found.experiment_id]))


def registration(root: Path, version: str, seed: int, promoted: bool) -> RegistrationRecord:
    return RegistrationRecord(
        name="digits-classifier",
        version=version,
        path=str(root / "registry" / "digits-classifier" / version),
        source_model=str(root / "model"),
        model_name="cnn",
        seed=seed,
        metrics={"accuracy": 0.9},
        details={"champion": {"promoted": promoted, "reason": "test"}},
        registered_at="2026-01-01T00:00:00+00:00",
    )


def test_one_parent_and_a_nested_run_per_candidate_and_seed(
    mlflow_server: Any, tmp_path: Path
) -> None:
    summary = compare(
        [result(tmp_path, "cnn", 0, 0.91), result(tmp_path, "cnn", 1, 0.93)], "accuracy", 0.5
    )
    line = track_pipeline_run(
        spec(mlflow_server.uri, "nested"), "job-1", summary, "snap-1", {"seeds": "0,1"}
    )
    assert not line.startswith(WARNING_PREFIX), line

    runs = runs_of(mlflow_server, "nested")
    parents = [r for r in runs if r.data.tags.get("role") == "pipeline"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["seeds"] == "0,1"
    assert parent.data.metrics["best_accuracy"] == pytest.approx(0.93)
    assert parent.data.tags["best_seed"] == "1"
    nested = sorted(
        (r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id),
        key=lambda r: r.data.tags["seed"],
    )
    assert [r.info.run_name for r in nested] == ["cnn-seed0", "cnn-seed1"]
    for seed, run in enumerate(nested):
        tags = run.data.tags
        assert {k: tags[k] for k in ("experiment", "target", "commit", "data_snapshot")} == {
            "experiment": "digits",
            "target": "local",
            "commit": "abc",
            "data_snapshot": "snap-1",
        }
        assert (tags["candidate"], tags["seed"]) == ("cnn", str(seed))
        assert tags["artifact.model"].endswith(f"train-cnn-{seed}/model")
        assert run.data.params["optimizer.name"] == "adam"
        assert run.data.metrics["test_accuracy"] == pytest.approx(0.91 + 0.02 * seed)
        history = mlflow_server.client().get_metric_history(run.info.run_id, "val_accuracy")
        assert [(h.step, round(h.value, 4)) for h in history] == [
            (epoch, round(v + seed / 100, 4))
            for epoch, v in enumerate(HISTORY["val_accuracy"], start=1)
        ]


def test_a_planned_run_without_a_result_is_a_failed_nested_run(
    mlflow_server: Any, tmp_path: Path
) -> None:
    """compare.on_failure: continue: the run whose task failed is recorded FAILED, with why."""
    summary = compare(
        [result(tmp_path, "cnn", 0, 0.91)], "accuracy", 0.5, planned=[("cnn", 0), ("big", 0)]
    )
    line = track_pipeline_run(spec(mlflow_server.uri, "failed"), "job-f", summary, "s", {})
    assert line.endswith("2 candidate x seed runs"), line
    nested = {
        r.info.run_name: r
        for r in runs_of(mlflow_server, "failed")
        if r.data.tags.get("role") != "pipeline"
    }
    assert nested["cnn-seed0"].info.status == "FINISHED"
    assert nested["big-seed0"].info.status == "FAILED"
    assert nested["big-seed0"].data.tags["error"] == MISSING_RESULT


def test_a_retried_step_reopens_its_parent_instead_of_a_second_one(
    mlflow_server: Any, tmp_path: Path
) -> None:
    summary = compare([result(tmp_path, "cnn", 0, 0.9)], "accuracy", 0.5)
    for _ in range(2):
        track_pipeline_run(spec(mlflow_server.uri, "retried"), "job-2", summary, "s", {})
    track_pipeline_run(spec(mlflow_server.uri, "retried"), "job-3", summary, "s", {})

    runs = runs_of(mlflow_server, "retried")
    keys = sorted(r.data.tags["pipeline_run"] for r in runs if r.data.tags["role"] == "pipeline")
    assert keys == ["job-2", "job-3"]
    assert sum(r.data.tags["role"] == "training" for r in runs) == 2


def test_registration_is_mirrored_and_champion_follows_the_promotion(
    mlflow_server: Any, tmp_path: Path
) -> None:
    tracking = spec(mlflow_server.uri, "registry")
    summary = compare(
        [result(tmp_path, "cnn", 0, 0.9), result(tmp_path, "cnn", 1, 0.8)], "accuracy", 0.5
    )
    track_pipeline_run(tracking, "job-4", summary, "s", {})
    line = track_registration(tracking, "job-4", registration(tmp_path, "v1", 0, True), "s")
    assert "v1" in line and not line.startswith(WARNING_PREFIX), line
    client = mlflow_server.client()
    champion = client.get_model_version_by_alias("digits-classifier", "champion")
    assert champion.tags["registry_version"] == "v1"
    nested = [r for r in runs_of(mlflow_server, "registry") if r.data.tags.get("seed") == "0"]
    assert champion.run_id == nested[0].info.run_id

    # A version that was not promoted is mirrored, and the champion stays where it was.
    track_registration(tracking, "job-4", registration(tmp_path, "v2", 1, False), "s")
    versions = client.search_model_versions("name = 'digits-classifier'")
    assert sorted(v.tags["registry_version"] for v in versions) == ["v1", "v2"]
    champion = client.get_model_version_by_alias("digits-classifier", "champion")
    assert champion.tags["registry_version"] == "v1"

    # Mirroring the same version again (a retry) adds nothing.
    track_registration(tracking, "job-4", registration(tmp_path, "v2", 1, False), "s")
    assert len(client.search_model_versions("name = 'digits-classifier'")) == 2


def test_a_dead_server_is_one_warning_line_and_then_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dead_mlflow_uri: str
) -> None:
    dead = dead_mlflow_uri
    summary = compare(
        [result(tmp_path, "cnn", 0, 0.9), result(tmp_path, "cnn", 1, 0.8)], "accuracy", 0.5
    )

    line = track_pipeline_run(spec(dead, "dead"), "job-5", summary, "s", {})

    assert line.startswith(f"{WARNING_PREFIX}: MLflow at {dead} failed"), line
    assert "\n" not in line
    err = capsys.readouterr().err
    assert err.splitlines() == [line]
    # After a warning the registration step does not try again (nor warn again).
    mirrored = track_registration(
        spec(dead, "dead"), "job-5", registration(tmp_path, "v1", 0, True), "s", tracked=line
    )
    assert mirrored.startswith("not mirrored")
    assert capsys.readouterr().err == ""


def test_a_server_that_fails_midway_also_warns_once(
    mlflow_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    tracker = open_mlflow(mlflow_server.uri, "midway")
    tracker.start_pipeline_run("job-6", "job-6", {}, {})
    assert tracker.on
    # A metric name MLflow refuses: the server answers 400 for the nested run's batch.
    tracker.log_training(TrainingRun("cnn", 0, final={"bad name!": 1.0}))
    tracker.log_training(TrainingRun("cnn", 1, final={"accuracy": 1.0}))
    tracker.finish_pipeline_run({}, {})
    assert not tracker.on
    assert len(capsys.readouterr().err.splitlines()) == 1
    names = {r.info.run_name for r in runs_of(mlflow_server, "midway")}
    assert "cnn-seed1" not in names  # off after the error: nothing more was sent


def test_an_unusable_uri_warns_when_first_used() -> None:
    tracker = Guarded("MLflow at x", lambda: (_ for _ in ()).throw(ValueError("no scheme")))
    tracker.start_pipeline_run("k", "k", {}, {})
    tracker.log_training(TrainingRun("cnn", 0))
    assert tracker.warning == f"{WARNING_PREFIX}: MLflow at x failed (ValueError: no scheme)"
