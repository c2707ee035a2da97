"""The export step in the compiled pipeline: after the gate, on every target, the best model only,
its artifact handed to registration; and Vertex's batch prediction job after the upload."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from pipelines.config import load_experiment
from pipelines.targets import get_target
from pipelines.targets.base import RunOptions

GCP = ["gcp.project=my-project", "gcp.bucket=gs://my-bucket"]
EXPORT = ["export.formats=[onnx, tflite_int8]", "export.calibration_images=50"]
BATCH = [
    "register.batch_predict.source=gs://my-bucket/batch/in-*.jsonl",
    "register.batch_predict.destination=gs://my-bucket/batch/out",
    "register.batch_predict.replicas=2",
]


def compile_spec(tmp_path, target: str, overrides: list[str]) -> dict[str, Any]:
    experiment = load_experiment("digits", [*GCP, *overrides])
    path = tmp_path / f"{target}.yaml"
    get_target(target, experiment, RunOptions(runs_dir=tmp_path / "runs")).compile(path)
    return next(yaml.safe_load_all(path.read_text()))  # the kfp compile adds a platform spec


def tasks(spec: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """component name -> (the DAG it is in, the task), over the root and every sub-DAG."""
    dags = {"root": spec["root"]["dag"]}
    dags.update({name: c["dag"] for name, c in spec["components"].items() if "dag" in c})
    found = {}
    for dag_name, dag in dags.items():
        for task in dag["tasks"].values():
            found[task["componentRef"]["name"]] = (dag_name, task)
    return found


def named(spec: dict[str, Any], prefix: str) -> list[tuple[str, dict[str, Any]]]:
    pattern = re.compile(rf"comp-{re.escape(prefix)}(-\d+)?")
    return [found for name, found in tasks(spec).items() if pattern.fullmatch(name)]


@pytest.mark.parametrize("target", ["local", "kfp", "vertex"])
def test_the_best_model_is_exported_after_the_gate_and_registered_with_it(tmp_path, target):
    spec = compile_spec(tmp_path, target, EXPORT)

    ((export_dag, export_task),) = named(spec, "export")
    ((register_dag, register_task),) = named(spec, "register-local")
    assert export_dag == register_dag, "export and register share the gate's condition"
    (condition,) = [
        t for t in spec["root"]["dag"]["tasks"].values() if t["componentRef"]["name"] == export_dag
    ]
    assert "gate-Output" in condition["triggerPolicy"]["condition"]
    assert "'passed'" in condition["triggerPolicy"]["condition"]
    artifacts = export_task["inputs"]["artifacts"]
    assert artifacts["model"]["taskOutputArtifact"]["producerTask"].startswith("importer")
    assert "dataset" in artifacts
    config = export_task["inputs"]["parameters"]["config"]["runtimeValue"]["constant"]
    assert config["formats"] == ["onnx", "tflite_int8"]
    assert config["max_accuracy_drop"] == {"float": 0.005, "int8": 0.02}
    assert config["calibration_images"] == 50
    exports = register_task["inputs"]["artifacts"]["exports"]["taskOutputArtifact"]
    assert exports == {"outputArtifactKey": "exports", "producerTask": "export"}


@pytest.mark.parametrize("target", ["local", "vertex"])
def test_without_an_export_section_there_is_no_export_step(tmp_path, target):
    spec = compile_spec(tmp_path, target, [])

    assert named(spec, "export") == []
    ((_, register_task),) = named(spec, "register-local")
    assert "exports" not in register_task["inputs"].get("artifacts", {})


def test_the_export_step_runs_in_the_cpu_image(tmp_path):
    image = "us-central1-docker.pkg.dev/my-project/imgclf/cpu:0123abc"
    spec = compile_spec(tmp_path, "vertex", [*EXPORT, f"images.cpu={image}"])

    ((_, export_task),) = named(spec, "export")
    label = spec["components"][export_task["componentRef"]["name"]]["executorLabel"]
    assert spec["deploymentSpec"]["executors"][label]["container"]["image"] == image


def test_vertex_runs_a_batch_prediction_job_on_the_uploaded_model(tmp_path):
    spec = compile_spec(tmp_path, "vertex", [*EXPORT, *BATCH])

    ((_, job),) = named(spec, "model-batch-predict")
    parameters = job["inputs"]["parameters"]

    def constant(name: str) -> Any:
        return parameters[name]["runtimeValue"]["constant"]

    assert constant("gcs_source_uris") == ["gs://my-bucket/batch/in-*.jsonl"]
    assert constant("gcs_destination_output_uri_prefix") == "gs://my-bucket/batch/out"
    assert constant("instances_format") == constant("predictions_format") == "jsonl"
    assert constant("starting_replica_count") == constant("max_replica_count") == 2
    assert constant("location") == "us-central1"
    # the model from whichever upload ran (a new version or a first model)
    producer = job["inputs"]["artifacts"]["model"]["taskOutputArtifact"]["producerTask"]
    assert producer.startswith("condition-branches")
    assert job["cachingOptions"] == {}


@pytest.mark.parametrize("target", ["local", "kfp"])
def test_batch_prediction_is_vertex_only(tmp_path, target):
    spec = compile_spec(tmp_path, target, BATCH)

    assert named(spec, "model-batch-predict") == []


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("register.batch_predict.source=/local/file.jsonl", "use a Cloud Storage URI"),
        ("export.formats=[onnx, tensorrt]", "unknown export format(s) 'tensorrt'"),
    ],
)
def test_bad_settings_exit_2(capsys, override, message):
    from pipelines.cli import main

    argv = ["--experiment", "digits", "--compile-only", "x.yaml"]
    for item in [*GCP, "register.batch_predict.destination=gs://my-bucket/o", override]:
        argv += ["--set", item]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
