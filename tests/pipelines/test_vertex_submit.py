"""Submitting to Vertex AI, offline: the real aiplatform client talks REST to a local stub of the
Vertex AI API (tests/conftest.py's VertexStub), which records every request. Only 127.0.0.1 can
be reached.

Also the preflight: every problem it finds exits with code 2 and sends nothing.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.common.results import CompareSummary, EvaluationResult, RegistrationRecord
from components.compare.run import compare
from components.register.vertex import plan_registration
from pipelines.cli import main
from pipelines.targets.vertex import VertexTarget

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT, REGION = "my-project", "us-central1"
PARENT = f"projects/{PROJECT}/locations/{REGION}"
REGISTRY = f"{REGION}-docker.pkg.dev/{PROJECT}/imgclf"
DIGEST = "sha256:" + "b" * 64
SERVICE_ACCOUNT = f"imgclf-pipelines@{PROJECT}.iam.gserviceaccount.com"
GCP = [
    f"gcp.project={PROJECT}",
    "gcp.bucket=gs://my-bucket",
    f"gcp.service_account={SERVICE_ACCOUNT}",
    f"images.cpu={REGISTRY}/cpu:0123abc",
    f"images.gpu={REGISTRY}/gpu:0123abc",
    f"images.tpu={REGISTRY}/tpu:0123abc",
    f"images.transformers={REGISTRY}/transformers@{DIGEST}",
]


@pytest.fixture
def vertex_api(vertex_stub, monkeypatch, every_registry_is) -> Any:
    """The Vertex AI stub; image lookups of every registry go to the registry stub."""
    from google.cloud.aiplatform.utils import gcs_utils

    # PipelineJob.submit gets or creates the pipeline root's bucket through Cloud Storage.
    monkeypatch.setattr(
        gcs_utils,
        "create_gcs_bucket_for_pipeline_artifacts_if_it_does_not_exist",
        vertex_stub.check_bucket,
    )
    monkeypatch.setattr(VertexTarget, "poll_seconds", 0.0)
    return vertex_stub


def submit(*args: str, experiment: str = "pets") -> int:
    argv = ["--experiment", experiment, "--target", "vertex"]
    for override in [*GCP, *args]:
        argv += ["--set", override] if "=" in override else [override]
    return main(argv)


def head_commit() -> tuple[str | None, bool]:
    done = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode:
        return None, False
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip(), bool(status.stdout.strip())


# --- the create request --------------------------------------------------------------------


def test_the_run_reaches_vertex_as_configured(vertex_api, capsys):
    assert submit("--no-cache", "--json") == 0

    (create,) = vertex_api.creates()
    job = create["body"]
    job_id = create["query"]["pipelineJobId"][0]
    assert create["path"] == f"{PARENT}/pipelineJobs"
    assert re.fullmatch(r"imgclf-pets-\d{14}", job_id)
    assert job["displayName"] == "imgclf-pets"
    assert job["serviceAccount"] == SERVICE_ACCOUNT
    runtime = job["runtimeConfig"]
    assert runtime["gcsOutputDirectory"] == "gs://my-bucket/pipeline-root/pets"
    parameters = runtime["parameterValues"]
    assert parameters["model_name"] == "pets-classifier"
    assert parameters["gate_min"] == 0.9
    assert parameters["data_config"]["source"] == "tfds:oxford_iiit_pet"
    assert parameters["registry_root"] == "/gcs/my-bucket/registry"
    commit, dirty = head_commit()
    expected = {"experiment": "pets"}
    if commit:
        expected["git-commit"] = commit
    if dirty:
        expected["git-dirty"] = "true"
    assert job["labels"] == expected
    # --no-cache reaches every task of the spec
    spec = job["pipelineSpec"]
    assert spec["root"]["dag"]["tasks"]["ingest"]["cachingOptions"] == {"enableCache": False}
    assert "network" not in job and "encryptionSpec" not in job
    # the pipeline root's bucket is checked with the run's account, nothing else is reached
    assert vertex_api.bucket_checks == [
        {
            "output_artifacts_gcs_dir": "gs://my-bucket/pipeline-root/pets",
            "service_account": SERVICE_ACCOUNT,
            "project": PROJECT,
            "location": REGION,
            "credentials": vertex_api.bucket_checks[0]["credentials"],
        }
    ]
    result = json.loads(capsys.readouterr().out)  # stdout is the result only
    assert result["status"] == "SUBMITTED"
    assert result["run"] == f"{PARENT}/pipelineJobs/{job_id}"
    assert result["url"] == (
        "https://console.cloud.google.com/vertex-ai/locations/us-central1/pipelines/runs/"
        f"{job_id}?project={PROJECT}"
    )
    assert result["images"]["images.transformers"] == f"{REGISTRY}/transformers@{DIGEST}"


@pytest.mark.parametrize("experiment", ["pets", "cats_vs_dogs"])
def test_the_run_is_compiled_with_the_digests_of_the_tags(
    vertex_api, every_registry_is, experiment
):
    assert submit(experiment=experiment) == 0

    (create,) = vertex_api.creates()
    spec = create["body"]["pipelineSpec"]
    executors = spec["deploymentSpec"]["executors"].values()
    images = [e["container"]["image"] for e in executors if "container" in e]
    images += [
        pool["container_spec"]["image_uri"]
        for c in spec["components"].values()
        for pool in c.get("inputDefinitions", {})
        .get("parameters", {})
        .get("worker_pool_specs", {})
        .get("defaultValue", [])
    ]
    looked_up = {r["path"] for r in every_registry_is.manifests()}
    cpu = every_registry_is.digest(f"{PROJECT}/imgclf/cpu", "0123abc")
    assert f"{REGISTRY}/cpu@{cpu}" in images
    assert all("@sha256:" in image for image in images), images
    assert ":0123abc" not in json.dumps(spec)
    # only the images the pipeline runs, each once; the pinned transformers image needs none
    expected = {f"/v2/{PROJECT}/imgclf/cpu/manifests/0123abc"}
    if experiment == "cats_vs_dogs":
        expected.add(f"/v2/{PROJECT}/imgclf/gpu/manifests/0123abc")
    assert looked_up == expected
    assert len(every_registry_is.manifests()) == len(expected)


def test_an_image_missing_from_the_registry_stops_before_submitting(
    vertex_api, every_registry_is, capsys
):
    every_registry_is.missing.add(f"{PROJECT}/imgclf/cpu:0123abc")

    assert submit() == 2

    assert vertex_api.creates() == []
    assert "images.cpu is" in capsys.readouterr().err


def test_compile_only_keeps_the_tags_and_asks_no_registry(every_registry_is, tmp_path):
    output = tmp_path / "pets.yaml"

    assert submit("--compile-only", str(output)) == 0

    assert every_registry_is.requests == []
    assert f"{REGISTRY}/cpu:0123abc" in output.read_text()


def test_no_credential_or_token_leaves_the_machine(vertex_api, credentials):
    assert submit() == 0

    assert vertex_api.requests
    for request in vertex_api.requests:
        assert "authorization" not in request["headers"]
        assert "x-goog-user-project" not in request["headers"]
        text = json.dumps(request)
        assert not credentials.search(text), credentials.search(text)


def test_network_key_and_experiment_reach_vertex(vertex_api):
    key = f"{PARENT}/keyRings/ml/cryptoKeys/pipelines"

    code = submit(
        "gcp.network=projects/123456/global/networks/vpc",
        f"gcp.encryption_key={key}",
        "gcp.experiment=pets-baselines",
    )

    assert code == 0
    (create,) = vertex_api.creates()
    assert create["body"]["network"] == "projects/123456/global/networks/vpc"
    assert create["body"]["encryptionSpec"] == {"kmsKeyName": key}
    # the experiment is created, then the run's context becomes one of its runs
    contexts = f"{PARENT}/metadataStores/default/contexts"
    made = [r for r in vertex_api.requests if r["path"] == contexts and r["method"] == "POST"]
    assert made[0]["query"]["contextId"] == ["pets-baselines"]
    assert made[0]["body"]["schemaTitle"] == "system.Experiment"
    (linked,) = [r for r in vertex_api.requests if r["path"].endswith(":addContextChildren")]
    assert linked["path"] == f"{contexts}/pets-baselines:addContextChildren"
    job_id = create["query"]["pipelineJobId"][0]
    assert linked["body"] == {"childContexts": [f"{contexts}/{job_id}"]}


def test_the_printout_names_each_image_by_digest_and_the_console(
    vertex_api, every_registry_is, capsys
):
    assert submit() == 0

    captured = capsys.readouterr()
    pinned = every_registry_is.digest(f"{PROJECT}/imgclf/cpu", "0123abc")
    assert f"pinned images.cpu: {REGISTRY}/cpu:0123abc is {pinned}" in captured.err
    assert f"images.cpu: {REGISTRY}/cpu@{pinned} (digest {pinned})" in captured.err
    assert (
        f"images.transformers: {REGISTRY}/transformers@{DIGEST} (digest {DIGEST})" in captured.err
    )
    assert "train: Vertex AI custom job on g2-standard-8, NVIDIA_L4 x1 (spot)" in captured.err
    assert "console: https://console.cloud.google.com/vertex-ai/locations/us-central1/" in (
        captured.err
    )
    assert "run: https://console.cloud.google.com/" in captured.out


def test_the_git_label_is_absent_outside_a_repository(vertex_api, monkeypatch, tmp_path):
    monkeypatch.setattr(VertexTarget, "source_dir", tmp_path)

    assert submit() == 0

    (create,) = vertex_api.creates()
    assert create["body"]["labels"] == {"experiment": "pets"}


def task(name: str, state: str) -> dict[str, Any]:
    detail = {"taskName": name, "state": state, "startTime": "2026-01-01T00:00:00Z"}
    if state in ("SUCCEEDED", "FAILED"):
        detail["endTime"] = "2026-01-01T00:01:30Z"
    return detail


def test_wait_streams_task_states_until_the_run_ends(vertex_api, capsys):
    vertex_api.job_updates = [
        {
            "state": "PIPELINE_STATE_RUNNING",
            "jobDetail": {"taskDetails": [task("ingest", "RUNNING")]},
        },
        {
            "state": "PIPELINE_STATE_RUNNING",
            "jobDetail": {"taskDetails": [task("ingest", "SUCCEEDED"), task("compare", "RUNNING")]},
        },
        {
            "state": "PIPELINE_STATE_SUCCEEDED",
            "jobDetail": {
                "taskDetails": [task("ingest", "SUCCEEDED"), task("compare", "SUCCEEDED")]
            },
        },
    ]

    assert submit("--wait") == 0

    captured = capsys.readouterr()
    lines = [line.strip() for line in captured.err.splitlines()]
    states = [line for line in lines if re.fullmatch(r"(ingest|compare): [A-Z]+", line)]
    assert states == [
        "ingest: RUNNING",
        "ingest: SUCCEEDED",
        "compare: RUNNING",
        "compare: SUCCEEDED",
    ]
    assert lines.index("ingest: RUNNING") > next(
        i for i, line in enumerate(lines) if line.startswith("console: ")
    )
    assert "experiment pets on vertex: SUCCEEDED" in captured.out
    assert re.search(r"ingest\s+SUCCEEDED\s+90\.0", captured.out)


def test_wait_reports_a_failed_run(vertex_api, capsys):
    vertex_api.job_updates = [
        {
            "state": "PIPELINE_STATE_FAILED",
            "error": {"code": 9, "message": "The DAG failed because some tasks failed."},
            "jobDetail": {"taskDetails": [task("ingest", "FAILED")]},
        }
    ]

    assert submit("--wait", "--json") == 1

    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "FAILED"
    assert result["error"] == "the run ended FAILED: The DAG failed because some tasks failed."
    assert result["tasks"] == [{"name": "ingest", "status": "FAILED", "seconds": 90.0}]


def test_a_refused_run_is_a_submit_error(vertex_api, capsys):
    vertex_api.refuse_create = "Service account does not exist"

    assert submit() == 1

    err = capsys.readouterr().err
    assert "error: Vertex AI did not take the run" in err
    assert "Service account does not exist" in err
    assert "Traceback" not in err


# --- preflight: exit code 2, nothing submitted ----------------------------------------------


@pytest.fixture
def nothing_submitted(vertex_api, monkeypatch) -> Iterator[None]:
    def no_compile(self: Any, path: Any) -> Path:
        raise AssertionError("compiled before the preflight passed")

    monkeypatch.setattr(VertexTarget, "compile", no_compile)
    yield
    assert vertex_api.requests == []
    assert vertex_api.bucket_checks == []


def preflight_error(capsys, *args: str, experiment: str = "pets") -> str:
    assert submit(*args, experiment=experiment) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    # the data snapshot's one line comes first; the preflight's problems are the rest
    err = "".join(
        line
        for line in captured.err.splitlines(keepends=True)
        if not line.startswith("data snapshot ")
    )
    assert err.startswith("error: ")
    assert "Traceback" not in err
    return err


@pytest.mark.usefixtures("nothing_submitted")
def test_missing_gcp_settings_are_named(capsys):
    assert main(["-e", "pets", "-t", "vertex", "--set", f"gcp.project={PROJECT}"]) == 2

    err = capsys.readouterr().err
    assert "--target vertex needs gcp.bucket, gcp.service_account; set them" in err
    assert "images.cpu is image-classification-cpu:latest, the local default image" in err
    assert "images.transformers is image-classification-transformers:latest" in err
    assert "make images" in err


@pytest.mark.usefixtures("nothing_submitted")
@pytest.mark.parametrize(
    ("experiment", "overrides", "message"),
    [
        (
            "pets",
            ["images.transformers=transformers:v1"],
            "images.transformers is transformers:v1, which names no registry",
        ),
        (
            "pets",
            [
                "gcp.region=europe-west1",
                "resources.vertex.machine_type=a3-highgpu-1g",
                "resources.vertex.accelerator=NVIDIA_H100_80GB",
            ],
            "resources.vertex.accelerator NVIDIA_H100_80GB is not offered for Vertex AI training "
            "in europe-west1; use a region that offers it (asia-northeast1, ",
        ),
        (
            "pets",
            ["resources.vertex.machine_type=n1-standard-8"],
            "resources.vertex.machine_type n1-standard-8 does not carry NVIDIA_L4; use a g2-* "
            "machine type",
        ),
        (
            "pets",
            ["resources.vertex.count=2"],
            "resources.vertex.count is 2 but g2-standard-8 has 1 NVIDIA_L4",
        ),
        (
            "cifar10_vehicles_animals",
            ["resources.vertex.tpu_topology=2x4"],
            "resources.vertex.tpu_topology 2x4 is 8 chips but ct5lp-hightpu-4t has 4; the train "
            "step is one worker, so use ct5lp-hightpu-8t",
        ),
        (
            "pets",
            ["register.aliases=[Production]"],
            "register.aliases: 'Production' is not a Vertex AI version alias",
        ),
        (
            "pets",
            ["gcp.service_account=imgclf-pipelines"],
            "gcp.service_account is 'imgclf-pipelines'; use the service account's email",
        ),
        (
            "pets",
            ["gcp.network=projects/my-project/global/networks/vpc"],
            "use projects/PROJECT_NUMBER/global/networks/NAME (the project number, not its ID)",
        ),
        (
            "pets",
            ["gcp.encryption_key=projects/p/locations/europe-west4/keyRings/r/cryptoKeys/k"],
            "gcp.encryption_key is in europe-west4 but the run is in us-central1",
        ),
    ],
)
def test_preflight_problems_exit_2(capsys, experiment, overrides, message):
    err = preflight_error(capsys, *overrides, experiment=experiment)

    assert message in err


@pytest.mark.usefixtures("nothing_submitted")
def test_every_problem_is_listed_at_once(capsys):
    err = preflight_error(
        capsys,
        "gcp.service_account=",
        "images.cpu=cpu:v1",
        "register.aliases=[A]",
        "resources.vertex.count=2",
    )

    lines = err.removeprefix("error: ").splitlines()
    assert lines[0].startswith("--target vertex needs gcp.service_account;")
    assert [line.split(" ", 1)[0] for line in lines[1:]] == [
        "images.cpu",
        "resources.vertex.count",
        "register.aliases:",
    ]


def test_an_unknown_region_warns_and_submits(vertex_api, capsys):
    assert submit("gcp.region=me-central2") == 0

    err = capsys.readouterr().err
    assert "warning: gcp.region me-central2 is not in the accelerator table" in err
    assert len(vertex_api.creates()) == 1


def test_a_moving_tag_warns_and_submits(vertex_api, capsys):
    assert submit(f"images.cpu={REGISTRY}/cpu:latest") == 0

    assert f"warning: images.cpu is {REGISTRY}/cpu:latest: a moving tag" in capsys.readouterr().err


def test_transformers_models_deploy_without_a_serving_image(vertex_api, capsys):
    """Every framework is served by our server in images.cpu: nothing more to configure."""
    assert submit("register.deploy=true") == 0

    assert "serving_image" not in capsys.readouterr().err
    assert len(vertex_api.creates()) == 1


# --- what the registration step looks up when it runs --------------------------------------


def summary(framework: str) -> CompareSummary:
    best = EvaluationResult(
        name="convnextv2-tiny",
        seed=0,
        framework=framework,
        model_uri="gs://my-bucket/pipeline-root/pets/123/train_456/model",
        metrics={"accuracy": 0.951234},
    )
    output = compare([best], "accuracy", 0.5).to_output()
    output["best"]["seed"] = 0.0  # numbers come back from the Struct as floats
    return CompareSummary.model_validate(output)


def record(framework: str) -> RegistrationRecord:
    """What the register step returns on Vertex (the folder registry in the bucket)."""
    return RegistrationRecord(
        name="pets-classifier",
        version="v3",
        path="/gcs/my-bucket/registry/pets-classifier/v3",
        source_model="gs://my-bucket/pipeline-root/pets/123/train_456/model",
        framework=framework,
        metrics={"accuracy": 0.951234},
        registered_at="2026-01-01T00:00:00+00:00",
    )


def plan(framework: str, endpoint: str = "") -> dict[str, Any]:
    return plan_registration(
        summary(framework), record(framework), "pets-classifier", endpoint, PROJECT, REGION
    )


def test_a_first_keras_model_is_served_from_its_version_folder_in_the_registry(vertex_api):
    found = plan("keras")

    # the folder registry's copy, which outlives the run's artifacts: our server loads it
    assert found["serving_uri"] == "gs://my-bucket/registry/pets-classifier/v3"
    assert "serving_image" not in found
    assert found["parent_model"] == found["parent_model_uri"] == ""
    assert found["endpoint"] == ""
    assert found["description"] == "v3: convnextv2-tiny seed 0, accuracy 0.9512"
    assert found["labels"] == {"imgclf_model": "pets-classifier", "registry_version": "v3"}
    (listed,) = vertex_api.requests
    assert listed["path"] == f"{PARENT}/models"
    assert listed["query"]["filter"] == ['display_name="pets-classifier"']


@pytest.mark.parametrize(
    ("promoted", "aliases"),
    [(True, ["production", "champion", "default"]), (False, ["production"])],
)
def test_a_promoted_version_takes_the_champion_and_default_aliases(vertex_api, promoted, aliases):
    decision = {"promoted": promoted, "reason": "accuracy ..."}
    registered = record("keras").model_copy(
        update={"aliases": ["production"], "details": {"champion": decision}}
    )
    found = plan_registration(summary("keras"), registered, "pets-classifier", "", PROJECT, REGION)
    assert found["version_aliases"] == aliases
    assert found["promoted"] is promoted


def test_a_registered_model_gets_a_new_version_and_its_endpoint_is_reused(vertex_api):
    model = f"{PARENT}/models/111"
    endpoint = f"{PARENT}/endpoints/222"
    vertex_api.lists = {
        "models": [{"name": model, "displayName": "pets-classifier"}],
        "endpoints": [{"name": endpoint, "displayName": "pets-classifier-endpoint"}],
    }
    vertex_api.resources[endpoint] = vertex_api.lists["endpoints"][0]

    found = plan("transformers", endpoint="pets-classifier-endpoint")

    assert found["serving_uri"] == "gs://my-bucket/registry/pets-classifier/v3"
    assert found["parent_model"] == model
    assert found["parent_model_uri"] == f"https://{REGION}-aiplatform.googleapis.com/v1/{model}"
    assert found["endpoint"] == endpoint
    assert found["endpoint_uri"] == f"https://{REGION}-aiplatform.googleapis.com/v1/{endpoint}"


# --- exports and batch prediction ------------------------------------------------------------


def test_exports_and_batch_prediction_reach_vertex(vertex_api, capsys):
    code = submit(
        "export.formats=[onnx_int8]",
        "register.batch_predict.source=gs://my-bucket/batch/in-*.jsonl",
        "register.batch_predict.destination=gs://my-bucket/batch/out",
        "register.batch_predict.machine_type=n1-standard-8",
        "--json",
    )
    assert code == 0

    (create,) = vertex_api.creates()
    spec = create["body"]["pipelineSpec"]
    dags = [spec["root"]["dag"], *(c["dag"] for c in spec["components"].values() if "dag" in c)]
    tasks = {t["componentRef"]["name"]: t for dag in dags for t in dag["tasks"].values()}
    (export,) = [t for name, t in tasks.items() if re.fullmatch(r"comp-export(-\d+)?", name)]
    config = export["inputs"]["parameters"]["config"]["runtimeValue"]["constant"]
    assert config["formats"] == ["onnx_int8"]
    (job,) = [t for name, t in tasks.items() if name.startswith("comp-model-batch-predict")]
    parameters = {
        k: v["runtimeValue"]["constant"]
        for k, v in job["inputs"]["parameters"].items()
        if "runtimeValue" in v
    }
    assert parameters["gcs_source_uris"] == ["gs://my-bucket/batch/in-*.jsonl"]
    assert parameters["gcs_destination_output_uri_prefix"] == "gs://my-bucket/batch/out"
    assert parameters["machine_type"] == "n1-standard-8"
    assert parameters["job_display_name"] == "pets-classifier-batch-predict"
    executor = spec["deploymentSpec"]["executors"][
        spec["components"][job["componentRef"]["name"]]["executorLabel"]
    ]
    assert "batch_prediction_job" in " ".join(
        executor["container"]["args"] + executor["container"]["command"]
    )
    assert json.loads(capsys.readouterr().out)["status"] == "SUBMITTED"


def test_exports_are_uploaded_with_the_models_artifacts(vertex_api, tmp_path, monkeypatch):
    """The version folder Vertex uploads holds export/; a registry outside the bucket gets the
    version's export/ copied into the Model folder that is uploaded instead."""
    import components.register.vertex as vertex

    version = tmp_path / "registry/pets-classifier/v3"
    (version / "export").mkdir(parents=True)
    (version / "export/model.onnx").write_bytes(b"onnx")
    (version / "export/export.json").write_text("{}")
    model = tmp_path / "bucket/pipeline-root/pets/123/train_456/model"
    model.mkdir(parents=True)

    def local_path(path: Any) -> Path:
        text = str(path)
        if text.startswith("gs://my-bucket/"):
            return tmp_path / "bucket" / text.removeprefix("gs://my-bucket/")
        return Path(text)

    monkeypatch.setattr(vertex, "local_path", local_path)
    in_bucket = record("keras").model_copy(update={"exports": ["onnx"]})
    outside = in_bucket.model_copy(update={"path": str(version)})

    found = plan_registration(summary("keras"), in_bucket, "pets-classifier", "", PROJECT, REGION)
    assert found["serving_uri"] == "gs://my-bucket/registry/pets-classifier/v3"
    assert found["description"].endswith("; exports onnx")
    assert not (model / "export").exists()

    found = plan_registration(summary("keras"), outside, "pets-classifier", "", PROJECT, REGION)
    assert found["serving_uri"] == "gs://my-bucket/pipeline-root/pets/123/train_456/model"
    assert (model / "export/model.onnx").read_bytes() == b"onnx"
    assert (model / "export/export.json").is_file()


def test_the_uploaded_model_is_served_by_our_server_container(vertex_api, tmp_path, monkeypatch):
    """GCPC's upload launcher, given the serving artifact as the pipeline imports it, sends the
    Model Registry a custom serving container: our image and command, port and routes."""
    import requests
    from google.oauth2.credentials import Credentials
    from google_cloud_pipeline_components.container.v1.gcp_launcher import lro_remote_runner
    from google_cloud_pipeline_components.container.v1.model.upload_model import remote_runner

    assert submit("register.deploy=true") == 0
    (create,) = vertex_api.creates()
    executors = create["body"]["pipelineSpec"]["deploymentSpec"]["executors"].values()
    (serving,) = [
        e["importer"]
        for e in executors
        if e.get("importer", {}).get("typeSchema", {}).get("schemaTitle")
        == "google.UnmanagedContainerModel"
    ]
    # what the importer holds when it runs: the model_name parameter filled in
    metadata = json.loads(
        json.dumps(serving["metadata"]).replace(
            "{{$.inputs.parameters['metadata']}}", "pets-classifier"
        )
    )
    uri = "gs://my-bucket/registry/pets-classifier/v3"
    executor_input = {
        "inputs": {
            "artifacts": {
                "unmanaged_container_model": {"artifacts": [{"uri": uri, "metadata": metadata}]}
            }
        },
        "outputs": {
            "artifacts": {
                "model": {"artifacts": [{"name": "model", "type": {"schemaTitle": "x"}}]}
            },
            "outputFile": str(tmp_path / "executor_output.json"),
        },
    }
    api = f"https://{REGION}-aiplatform.googleapis.com/"

    class ToTheStub:
        def post(self, url: str, **kwargs: Any) -> Any:
            return requests.post(url.replace(api, vertex_api.endpoint + "/"), **kwargs)

        def get(self, url: str, **kwargs: Any) -> Any:
            return requests.get(url.replace(api, vertex_api.endpoint + "/"), **kwargs)

    monkeypatch.setattr(lro_remote_runner, "requests", ToTheStub())
    monkeypatch.setattr(
        lro_remote_runner.google.auth, "default", lambda: (Credentials(token="t"), PROJECT)
    )
    vertex_api.requests.clear()

    remote_runner.upload_model(
        type="UploadModel",
        project=PROJECT,
        location=REGION,
        payload=json.dumps({"display_name": "pets-classifier"}),
        gcp_resources=str(tmp_path / "gcp_resources.json"),
        executor_input=json.dumps(executor_input),
    )

    (upload,) = [r for r in vertex_api.requests if r["path"].endswith("models:upload")]
    assert upload["path"] == f"{PARENT}/models:upload"
    model = upload["body"]["model"]
    assert model["artifact_uri"] == uri
    container = model["container_spec"]
    # images.cpu, pinned to its digest at submission like every step's image
    assert container.pop("image_uri").startswith(f"{REGISTRY}/cpu@sha256:")
    assert container == {
        "command": ["python", "-m", "components.serve"],
        "args": ["--host", "0.0.0.0", "--name", "pets-classifier"],
        "ports": [{"container_port": 8080}],
        "health_route": "/v1/models/pets-classifier",
        "predict_route": "/v1/models/pets-classifier:predict",
    }
    output = json.loads((tmp_path / "executor_output.json").read_text())
    assert output["artifacts"]["model"]["artifacts"][0]["metadata"]["resourceName"].startswith(
        f"{PARENT}/models/"
    )
