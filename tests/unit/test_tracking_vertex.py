"""The Vertex AI Experiments backend, offline: the real aiplatform client talks REST to the
Vertex AI stub (tests/conftest.py's VertexStub), and the tests read what it was sent: one
experiment run per candidate x seed under the experiment, its parameters and metrics, its end
state; a refusing API costs one warning line and nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from components.common.model_card import ModelCard
from components.common.results import EvaluationResult, RegistrationRecord
from components.common.tracking import WARNING_PREFIX, vertex_run_name
from components.compare.run import MISSING_RESULT, compare
from components.spec.tracking import TrackingSpec
from components.track.run import track_pipeline_run, track_registration

EXPERIMENT = "digits-baselines"
HISTORY = {"loss": [1.2, 0.7, 0.4], "val_accuracy": [0.5, 0.9, 0.8], "val_loss": [1.0, 0.3, 0.5]}


def spec(stub: Any, mlflow: str = "") -> TrackingSpec:
    return TrackingSpec(
        mlflow=mlflow,
        vertex_experiment=EXPERIMENT,
        project=stub.project,
        location=stub.location,
        experiment="digits",
        target="vertex",
        commit="abc",
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
        training={
            "spec": {"name": name, "epochs": 3, "optimizer": {"name": "adam"}},
            "outcome": {"best_epoch": 2},
        },
        history=HISTORY,
    ).save(model)
    return EvaluationResult(
        name=name,
        seed=seed,
        framework="keras",
        model_uri=str(model),
        metrics={"accuracy": accuracy, "log_loss": 0.3},
    )


def contexts(stub: Any) -> str:
    return f"projects/{stub.project}/locations/{stub.location}/metadataStores/default/contexts"


def created_runs(stub: Any) -> dict[str, dict[str, Any]]:
    """Experiment run id -> the body that created it."""
    return {
        r["query"]["contextId"][0]: r["body"]
        for r in stub.requests
        if r["method"] == "POST"
        and r["path"] == contexts(stub)
        and r["body"]["schemaTitle"] == "system.ExperimentRun"
    }


def last_update(stub: Any, run_id: str) -> dict[str, Any]:
    """The metadata the last PATCH of an experiment run left it with."""
    path = f"{contexts(stub)}/{run_id}"
    patches = [r for r in stub.requests if r["method"] == "PATCH" and r["path"] == path]
    assert patches, f"no update of {run_id}"
    return patches[-1]["body"]["metadata"]


def test_an_experiment_run_per_candidate_and_seed(vertex_stub: Any, tmp_path: Path) -> None:
    summary = compare(
        [result(tmp_path, "cnn", 0, 0.91), result(tmp_path, "cnn", 1, 0.93)],
        "accuracy",
        0.5,
        planned=[("cnn", 0), ("cnn", 1), ("big", 0)],
    )

    line = track_pipeline_run(spec(vertex_stub), "imgclf-digits-2026", summary, "snap-1", {})

    assert line == "tracked in Vertex AI Experiments: 1 pipeline run, 3 candidate x seed runs"
    # the experiment, created once, and a run per candidate x seed, each one of its children
    made = [
        r
        for r in vertex_stub.requests
        if r["method"] == "POST" and r["path"] == contexts(vertex_stub)
    ]
    assert made[0]["query"]["contextId"] == [EXPERIMENT]
    assert made[0]["body"]["schemaTitle"] == "system.Experiment"
    runs = created_runs(vertex_stub)
    names = [f"imgclf-digits-2026-{c}" for c in ("cnn-seed0", "cnn-seed1", "big-seed0")]
    assert sorted(runs) == sorted(f"{EXPERIMENT}-{name}" for name in names)
    assert sorted(body["displayName"] for body in runs.values()) == sorted(names)
    children = [
        child
        for r in vertex_stub.requests
        if r["path"] == f"{contexts(vertex_stub)}/{EXPERIMENT}:addContextChildren"
        for child in r["body"]["childContexts"]
    ]
    assert sorted(children) == sorted(f"{contexts(vertex_stub)}/{run}" for run in runs)

    done = last_update(vertex_stub, f"{EXPERIMENT}-imgclf-digits-2026-cnn-seed1")
    assert done["_state"] == "COMPLETE"
    params = done["_params"]
    assert params["optimizer.name"] == "adam" and params["epochs"] == "3"
    assert (params["candidate"], params["seed"]) == ("cnn", "1")
    assert params["pipeline_run"] == "imgclf-digits-2026"
    assert (params["experiment"], params["target"], params["data_snapshot"]) == (
        "digits",
        "vertex",
        "snap-1",
    )
    assert params["artifact.model"].endswith("train-cnn-1/model")
    # the test metrics and the validation metrics of the best epoch (2), no per-epoch series
    assert done["_metrics"] == {
        "test_accuracy": 0.93,
        "test_log_loss": 0.3,
        "best_val_accuracy": 0.9,
        "best_val_loss": 0.3,
    }
    assert not any("tensorboard" in r["path"].lower() for r in vertex_stub.requests)

    failed = last_update(vertex_stub, f"{EXPERIMENT}-imgclf-digits-2026-big-seed0")
    assert failed["_state"] == "FAILED"
    assert failed["_params"]["error"] == MISSING_RESULT


def test_per_epoch_series_go_to_the_experiments_backing_tensorboard(
    vertex_stub: Any, tmp_path: Path
) -> None:
    parent = f"projects/{vertex_stub.project}/locations/{vertex_stub.location}"
    tensorboard = f"{parent}/tensorboards/123"
    vertex_stub.resources[tensorboard] = {"name": tensorboard, "displayName": "runs"}
    experiment = f"{contexts(vertex_stub)}/{EXPERIMENT}"
    vertex_stub.resources[experiment] = {
        "name": experiment,
        "displayName": EXPERIMENT,
        "schemaTitle": "system.Experiment",
        "metadata": {"experiment_deleted": False, "backing_tensorboard_resource": tensorboard},
    }
    summary = compare([result(tmp_path, "cnn", 0, 0.9)], "accuracy", 0.5)

    line = track_pipeline_run(spec(vertex_stub), "job-5", summary, "s", {})

    assert not line.startswith(WARNING_PREFIX), line
    run = f"{tensorboard}/experiments/{EXPERIMENT}/runs/job-5-cnn-seed0"
    series: dict[str, list[tuple[int, float]]] = {}
    for request in vertex_stub.requests:
        if request["path"] == f"{run}:write":
            for data in request["body"]["timeSeriesData"]:
                for value in data["values"]:
                    series.setdefault(data["tensorboardTimeSeriesId"], []).append(
                        (int(value["step"]), value["scalar"]["value"])
                    )
    assert series == {k: list(enumerate(v, start=1)) for k, v in HISTORY.items()}
    assert last_update(vertex_stub, f"{EXPERIMENT}-job-5-cnn-seed0")["_state"] == "COMPLETE"
    # no TensorBoard was created: the experiment's own is used
    assert not any(
        r["method"] == "POST" and r["path"] == f"{parent}/tensorboards"
        for r in vertex_stub.requests
    )


def test_a_retried_step_resumes_its_runs(vertex_stub: Any, tmp_path: Path) -> None:
    summary = compare([result(tmp_path, "cnn", 0, 0.9)], "accuracy", 0.5)
    for _ in range(2):
        line = track_pipeline_run(spec(vertex_stub), "job-2", summary, "s", {})
        assert not line.startswith(WARNING_PREFIX), line

    assert list(created_runs(vertex_stub)) == [f"{EXPERIMENT}-job-2-cnn-seed0"]
    assert last_update(vertex_stub, f"{EXPERIMENT}-job-2-cnn-seed0")["_state"] == "COMPLETE"


def test_a_refusing_api_is_one_warning_line_and_no_exception(
    vertex_stub: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vertex_stub.refuse = "Permission 'aiplatform.metadataStores.get' denied"
    summary = compare(
        [result(tmp_path, "cnn", 0, 0.9), result(tmp_path, "cnn", 1, 0.8)], "accuracy", 0.5
    )

    line = track_pipeline_run(spec(vertex_stub), "job-3", summary, "s", {})

    assert line.startswith(f"{WARNING_PREFIX}: Vertex AI Experiments {EXPERIMENT} failed"), line
    assert "\n" not in line
    assert capsys.readouterr().err.splitlines() == [line]
    asked = len(vertex_stub.requests)
    assert asked == 1  # off after the first refusal: nothing more was sent


def test_with_mlflow_too_each_backend_fails_on_its_own(
    vertex_stub: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], dead_mlflow_uri: str
) -> None:
    summary = compare([result(tmp_path, "cnn", 0, 0.9)], "accuracy", 0.5)
    tracking = spec(vertex_stub, mlflow=dead_mlflow_uri)

    line = track_pipeline_run(tracking, "job-4", summary, "s", {})

    done, warning = line.split("; ")
    assert (
        done
        == "tracked in MLflow and Vertex AI Experiments: 1 pipeline run, 1 candidate x seed runs"
    )
    assert warning.startswith(f"{WARNING_PREFIX}: MLflow at {dead_mlflow_uri} failed")
    assert capsys.readouterr().err.splitlines() == [warning]
    assert list(created_runs(vertex_stub)) == [f"{EXPERIMENT}-job-4-cnn-seed0"]
    # MLflow warned: the registration step tries it no more, and Vertex AI has nothing to mirror
    record = RegistrationRecord(
        name="digits-classifier",
        version="v1",
        path=str(tmp_path / "registry/digits-classifier/v1"),
        source_model=str(tmp_path / "model"),
        metrics={"accuracy": 0.9},
        registered_at="2026-01-01T00:00:00+00:00",
    )
    asked = len(vertex_stub.requests)
    mirrored = track_registration(tracking, "job-4", record, "s", tracked=line)
    assert mirrored.startswith("not mirrored")
    assert len(vertex_stub.requests) == asked
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("pipeline_run", "candidate", "seed"),
    [
        ("imgclf-digits-20260101120000", "ConvNeXt_V2.tiny", 3),
        ("imgclf-pets-20260101120000", "x" * 200, 0),
    ],
)
def test_run_names_are_valid_vertex_ids(pipeline_run: str, candidate: str, seed: int) -> None:
    name = vertex_run_name(EXPERIMENT, pipeline_run, candidate, seed)

    assert len(f"{EXPERIMENT}-{name}") <= 128
    assert name[0].isalnum() and set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
    assert name.startswith(pipeline_run)
    # two long names differing only at the end stay apart
    other = vertex_run_name(EXPERIMENT, pipeline_run, candidate + "y", seed)
    assert other != name
