"""The serving specs, offline: the kind InferenceService is valid against KServe's CRD schema
(tests/schemas/, read strictly: a field the schema lacks is an error) and serves the
experiment's registered model from the registry volume in RawDeployment mode; the Vertex AI
container spec runs the same command in the same image."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from components.serve.manifests import COMMAND, inference_service, vertex_container_spec
from components.serve.protocol import kserve_routes
from pipelines.config import KIND_REGISTRY_PVC, load_experiment
from pipelines.serving import kind_inference_service, main
from pipelines.targets.kfp.cluster import REGISTRY_MOUNT

SCHEMA = Path(__file__).parents[1] / "schemas" / "inferenceservice-v0.15.2.yaml"


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with `additionalProperties: false` on every object that lists its properties:
    the API server would prune unknown fields silently; here they fail."""
    schema = copy.deepcopy(schema)

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
    return schema


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(strict(yaml.safe_load(SCHEMA.read_text())))


def container(manifest: dict[str, Any]) -> dict[str, Any]:
    (only,) = manifest["spec"]["predictor"]["containers"]
    return only


def test_the_inference_service_of_an_experiment_is_valid(validator):
    experiment = load_experiment("digits", ["images.cpu=registry.local/cpu:0123abc"])
    manifest = kind_inference_service(experiment)

    validator.validate(manifest)
    assert manifest["apiVersion"] == "serving.kserve.io/v1beta1"
    assert manifest["kind"] == "InferenceService"
    assert manifest["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == (
        "RawDeployment"
    )
    served = container(manifest)
    name = experiment.registration.name
    assert served["image"] == "registry.local/cpu:0123abc"
    assert served["command"] == COMMAND
    # the champion of the registry volume, read when the pod starts
    assert served["args"][:2] == ["--model", f"{REGISTRY_MOUNT}/{name}"]
    assert served["readinessProbe"]["httpGet"]["path"] == kserve_routes(name)[0]
    (claim,) = manifest["spec"]["predictor"]["volumes"]
    assert claim["persistentVolumeClaim"] == {"claimName": KIND_REGISTRY_PVC, "readOnly": True}
    assert served["volumeMounts"][0]["mountPath"] == REGISTRY_MOUNT


def test_a_version_can_be_pinned(validator):
    manifest = kind_inference_service(load_experiment("digits"), version="v3")

    validator.validate(manifest)
    name = manifest["metadata"]["name"]
    assert container(manifest)["args"][:2] == ["--model", f"{REGISTRY_MOUNT}/{name}/v3"]
    assert manifest["metadata"]["labels"]["registry_version"] == "v3"


def test_the_schema_check_catches_what_the_api_server_would_drop(validator):
    """Control: a misspelt field and a wrong type both fail the strict schema."""
    manifest = kind_inference_service(load_experiment("digits"))
    misspelt = copy.deepcopy(manifest)
    container(misspelt)["volumeMount"] = container(misspelt).pop("volumeMounts")
    wrong_type = copy.deepcopy(manifest)
    wrong_type["spec"]["predictor"]["minReplicas"] = "one"

    for broken in (misspelt, wrong_type):
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(broken)


def test_the_cli_writes_the_manifest_and_refuses_what_cannot_be_served(tmp_path, capsys):
    output = tmp_path / "digits.isvc.yaml"
    assert main(["--experiment", "digits", "--output", str(output)]) == 0
    assert yaml.safe_load(output.read_text())["kind"] == "InferenceService"
    assert "&id" not in output.read_text()  # no YAML anchors: kubectl users read it

    assert main(["--experiment", "digits", "--set", "kfp.registry_pvc=null"]) == 2
    assert "kfp.registry_pvc is null" in capsys.readouterr().err
    assert main(["--experiment", "digits", "--version", "3"]) == 2
    assert "name a version as v<N>" in capsys.readouterr().err
    assert main(["--experiment", "digits", "--set", "register.name=9lives"]) == 2
    assert "cannot name an InferenceService" in capsys.readouterr().err


def test_vertex_runs_the_same_server_command_with_its_own_settings():
    spec = vertex_container_spec("pets-classifier", "registry.local/cpu:0123abc")
    kind = inference_service(
        "pets-classifier",
        "registry.local/cpu:0123abc",
        registry_pvc="imgclf-registry",
        registry_mount=REGISTRY_MOUNT,
    )

    assert spec["imageUri"] == container(kind)["image"]
    assert spec["command"] == container(kind)["command"]
    # no --model and no --port: Vertex AI's AIP_STORAGE_URI and AIP_HTTP_PORT say them
    assert "--model" not in spec["args"] and "--port" not in spec["args"]
    assert spec["ports"] == [{"containerPort": 8080}]
    assert (spec["healthRoute"], spec["predictRoute"]) == kserve_routes("pets-classifier")
