"""The vertex compile: hardware, images, retries, service account and Model Registry steps land
where Vertex AI Pipelines reads them, and the package loads in `aiplatform.PipelineJob`.

Expected values come from the experiment files as written, not from the target's code.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from pipelines.config import EXPERIMENTS_DIR, Experiment, load_experiment
from pipelines.targets import get_target
from pipelines.targets.base import RunOptions

EXPERIMENTS = sorted(path.stem for path in EXPERIMENTS_DIR.glob("*.yaml"))
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
REGISTRY = "us-central1-docker.pkg.dev/my-project/imgclf"
IMAGES = {
    "cpu": f"{REGISTRY}/cpu:0123abc",
    "gpu": f"{REGISTRY}/gpu@sha256:" + "a" * 64,
    "tpu": f"{REGISTRY}/tpu:0123abc",
    "transformers": f"{REGISTRY}/transformers:0123abc",
}
SERVICE_ACCOUNT = "imgclf-pipelines@my-project.iam.gserviceaccount.com"
GCP = (
    "gcp.project=my-project",
    "gcp.bucket=gs://my-bucket",
    f"gcp.service_account={SERVICE_ACCOUNT}",
    *(f"images.{name}={image}" for name, image in IMAGES.items()),
)
DEPLOY = (*GCP, "register.deploy=true", f"register.serving_image={REGISTRY}/serve:1")
CUSTOM_JOB_LAUNCHER = "google_cloud_pipeline_components.container.v1.custom_job.launcher"
UPLOAD_LAUNCHER = "google_cloud_pipeline_components.container.v1.model.upload_model.launcher"


# The same scan as test_compile.py's: keys and tokens that must never reach a package or request.
@dataclass
class Spec:
    experiment: Experiment
    text: str
    spec: dict[str, Any]
    path: str

    @property
    def parameters(self) -> dict[str, Any]:
        return self.spec["root"]["inputDefinitions"]["parameters"]

    def tasks(self) -> Iterator[tuple[str, dict[str, Any]]]:
        dags = [self.spec["root"]["dag"]] + [
            c["dag"] for c in self.spec["components"].values() if "dag" in c
        ]
        for dag in dags:
            yield from dag["tasks"].items()

    def component(self, task: dict[str, Any]) -> dict[str, Any]:
        return self.spec["components"][task["componentRef"]["name"]]

    def executor(self, task: dict[str, Any]) -> dict[str, Any]:
        label = self.component(task)["executorLabel"]
        return self.spec["deploymentSpec"]["executors"][label]

    def named(self, prefix: str) -> list[dict[str, Any]]:
        """Tasks whose component is `comp-<prefix>` or `comp-<prefix>-N`."""
        pattern = re.compile(rf"comp-{re.escape(prefix)}(-\d+)?")
        return [t for _, t in self.tasks() if pattern.fullmatch(t["componentRef"]["name"])]

    def train_tasks(self) -> dict[str, dict[str, Any]]:
        """framework -> train task (of a search: the winner's), read from its loop's items."""
        return dict(self.all_train_tasks())

    def all_train_tasks(self) -> list[tuple[str, dict[str, Any]]]:
        """(framework, train task) of every loop, a search's trials included."""
        found = []
        for _, loop in self.tasks():
            if "parameterIterator" not in loop:
                continue
            iterator = loop["parameterIterator"]["items"]
            if "raw" in iterator:
                items = yaml.safe_load(iterator["raw"])
                (framework,) = {item["model_spec"]["framework"] for item in items}
            else:  # a search's loop: the recipe is an input of the task that feeds it
                channel = loop["inputs"]["parameters"][iterator["inputParameter"]]
                producer = self.spec["root"]["dag"]["tasks"][
                    channel["taskOutputParameter"]["producerTask"]
                ]
                framework = self.inputs(producer)["model_spec"]["framework"]
            body = self.component(loop)["dag"]["tasks"]
            (train,) = [
                t
                for t in body.values()
                if re.fullmatch(r"comp-train(-\d+)?", t["componentRef"]["name"])
            ]
            found.append((framework, train))
        return found

    def inputs(self, task: dict[str, Any]) -> dict[str, Any]:
        """The task's input parameters: what it is called with, else the component's defaults."""
        defaults = {
            name: p.get("defaultValue")
            for name, p in self.component(task)["inputDefinitions"]["parameters"].items()
        }
        for name, value in task.get("inputs", {}).get("parameters", {}).items():
            if "runtimeValue" in value:
                defaults[name] = value["runtimeValue"]["constant"]
        return defaults


@pytest.fixture(scope="module")
def compile_vertex(tmp_path_factory) -> Callable[..., Spec]:
    folder = tmp_path_factory.mktemp("vertex")

    @functools.cache
    def compile_once(name: str, overrides: tuple[str, ...] = GCP) -> Spec:
        experiment = load_experiment(name, list(overrides))
        path = folder / f"{name}.{abs(hash(overrides))}.yaml"
        get_target("vertex", experiment, RunOptions(runs_dir=folder / "runs")).compile(path)
        text = path.read_text()
        return Spec(experiment, text, yaml.load(text, Loader=SafeLoader), str(path))

    return compile_once


def raw_vertex(name: str) -> dict[str, Any]:
    raw = yaml.load((EXPERIMENTS_DIR / f"{name}.yaml").read_text(), Loader=SafeLoader)
    return raw.get("resources", {}).get("vertex", {})


def expected_image(raw: dict[str, Any], framework: str) -> str:
    if framework == "transformers":
        return IMAGES["transformers"]
    accelerator = raw.get("accelerator") or ""
    return IMAGES["tpu" if accelerator.startswith("TPU") else "gpu" if accelerator else "cpu"]


def worker_pools(compiled: Spec, task: dict[str, Any]) -> list[dict[str, Any]]:
    return compiled.inputs(task)["worker_pool_specs"]


# --- training hardware ---------------------------------------------------------------------


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_training_runs_on_the_experiments_hardware(compile_vertex, name):
    compiled = compile_vertex(name)
    raw = raw_vertex(name)
    custom_job = bool(raw.get("spot") or raw.get("tpu_topology") or raw.get("reservation"))

    trains = compiled.train_tasks()

    assert trains
    for framework, task in trains.items():
        container = compiled.executor(task)["container"]
        if custom_job:
            # The task launches a custom job and waits for it; the job's worker does the work.
            assert container["command"][-1] == CUSTOM_JOB_LAUNCHER
            assert "accelerator" not in container.get("resources", {})
            (pool,) = worker_pools(compiled, task)
            assert pool["replica_count"] == 1
            assert pool["container_spec"]["image_uri"] == expected_image(raw, framework)
            assert "{{$.json_escape[1]}}" in pool["container_spec"]["args"]  # executor input
            machine = pool["machine_spec"]
            assert machine["machine_type"] == raw["machine_type"]
            assert machine["accelerator_type"] == raw["accelerator"]
            strategy = compiled.inputs(task)["strategy"]
            assert strategy == ("SPOT" if raw.get("spot") else "STANDARD")
        else:
            assert container["image"] == expected_image(raw, framework)
            assert "worker_pool_specs" not in compiled.inputs(task)
        # Either way the task runs in the step's image (a custom job's launcher too).
        assert container["image"] == expected_image(raw, framework)
        retries = raw.get("retries", 0)
        assert task.get("retryPolicy", {}).get("maxRetryCount", 0) == retries


@pytest.mark.parametrize("name", ["pets", "cats_vs_dogs", "cifar10", "cifar100", "cub200"])
def test_gpu_experiments_train_on_one_spot_l4_with_retries(compile_vertex, name):
    compiled = compile_vertex(name)

    for task in compiled.train_tasks().values():
        (pool,) = worker_pools(compiled, task)
        assert pool["machine_spec"]["accelerator_type"] == "NVIDIA_L4"
        assert pool["machine_spec"]["accelerator_count"] == 1
        assert pool["machine_spec"]["machine_type"].startswith("g2-standard-")
        assert "tpu_topology" not in pool["machine_spec"]
        assert compiled.inputs(task)["strategy"] == "SPOT"
        assert task["retryPolicy"]["maxRetryCount"] == 2


def test_vehicles_animals_trains_on_a_v5e_2x2_slice(compile_vertex):
    compiled = compile_vertex("cifar10_vehicles_animals")

    (task,) = compiled.train_tasks().values()
    (pool,) = worker_pools(compiled, task)

    assert pool["machine_spec"] == {
        "machine_type": "ct5lp-hightpu-4t",
        "accelerator_type": "TPU_V5_LITEPOD",
        "accelerator_count": 4,  # the chips of a 2x2 slice
        "tpu_topology": "2x2",
    }
    assert pool["container_spec"]["image_uri"] == IMAGES["tpu"]
    assert compiled.inputs(task)["strategy"] == "STANDARD"
    assert task["retryPolicy"]["maxRetryCount"] == 2


def test_mnist_trains_in_a_plain_cpu_task(compile_vertex):
    compiled = compile_vertex("mnist")

    (task,) = compiled.train_tasks().values()
    container = compiled.executor(task)["container"]

    assert container["image"] == IMAGES["cpu"]
    assert "accelerator" not in container.get("resources", {})
    assert CUSTOM_JOB_LAUNCHER not in compiled.text


def test_an_on_demand_gpu_stays_a_plain_task(compile_vertex):
    compiled = compile_vertex(
        "mnist",
        (
            *GCP,
            "resources.vertex.accelerator=NVIDIA_TESLA_T4",
            "resources.vertex.count=2",
            "resources.vertex.memory_limit=32G",
        ),
    )

    (task,) = compiled.train_tasks().values()
    resources = compiled.executor(task)["container"]["resources"]

    assert resources["accelerator"]["resourceType"] == "NVIDIA_TESLA_T4"
    assert resources["accelerator"]["resourceCount"] == "2"
    assert resources["resourceMemoryLimit"] == "32G"
    assert CUSTOM_JOB_LAUNCHER not in compiled.text


def l4(*more: str) -> tuple[str, ...]:
    return (
        *GCP,
        "resources.vertex.machine_type=g2-standard-8",
        "resources.vertex.accelerator=NVIDIA_L4",
        *more,
    )


def test_flex_start_waits_for_capacity(compile_vertex):
    compiled = compile_vertex(
        "mnist", l4("resources.vertex.flex_start=true", "resources.vertex.max_wait_duration=7200s")
    )

    (task,) = compiled.train_tasks().values()
    inputs = compiled.inputs(task)

    assert inputs["strategy"] == "FLEX_START"
    assert inputs["max_wait_duration"] == "7200s"
    assert worker_pools(compiled, task)[0]["machine_spec"]["accelerator_type"] == "NVIDIA_L4"


@pytest.mark.parametrize(
    ("reservation", "affinity"),
    [
        ("any", {"reservation_affinity_type": "ANY_RESERVATION"}),
        (
            "projects/my-project/zones/us-central1-a/reservations/l4s",
            {
                "reservation_affinity_type": "SPECIFIC_RESERVATION",
                "key": "compute.googleapis.com/reservation-name",
                "values": ["projects/my-project/zones/us-central1-a/reservations/l4s"],
            },
        ),
    ],
)
def test_reservations_reach_the_machine_spec(compile_vertex, reservation, affinity):
    compiled = compile_vertex("mnist", l4(f"resources.vertex.reservation={reservation}"))

    (task,) = compiled.train_tasks().values()
    (pool,) = worker_pools(compiled, task)

    assert pool["machine_spec"]["reservation_affinity"] == affinity
    assert compiled.inputs(task)["strategy"] == "STANDARD"


def test_tensorboard_gets_a_log_directory_per_task(compile_vertex):
    tensorboard = "projects/my-project/locations/us-central1/tensorboards/42"
    compiled = compile_vertex("mnist", (*GCP, f"gcp.tensorboard={tensorboard}"))

    (task,) = compiled.train_tasks().values()
    inputs = compiled.inputs(task)

    assert inputs["tensorboard"] == tensorboard
    # Unique per task: AIP_CHECKPOINT_DIR lies beneath it, and every candidate resumes its own.
    assert inputs["base_output_directory"] == (
        "gs://my-bucket/custom-jobs/{{$.pipeline_job_uuid}}/{{$.pipeline_task_uuid}}"
    )


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_retries_only_on_training(compile_vertex, name):
    compiled = compile_vertex(name)
    trains = [id(t) for _, t in compiled.all_train_tasks()]

    retried = [id(t) for _, t in compiled.tasks() if "retryPolicy" in t]

    assert sorted(retried) == sorted(trains if raw_vertex(name).get("retries") else [])


# --- service account, network, key ----------------------------------------------------------


@pytest.mark.parametrize("name", ["pets", "cifar10_vehicles_animals"])
def test_custom_jobs_run_as_the_pipelines_service_account(compile_vertex, name):
    compiled = compile_vertex(name)

    for task in compiled.train_tasks().values():
        inputs = compiled.inputs(task)
        # Resolved by Vertex AI to the PipelineJob's service account when the task runs.
        assert inputs["service_account"] == "{{$.pipeline_service_account}}"
        assert inputs["project"] == "{{$.pipeline_google_cloud_project_id}}"
        assert inputs["location"] == "{{$.pipeline_google_cloud_location}}"
        assert inputs["network"] == ""
        assert inputs["encryption_spec_key_name"] == ""
    # The account itself is given at submit: the package runs under any account.
    assert SERVICE_ACCOUNT not in compiled.text


def test_network_and_key_follow_the_pipeline_job(compile_vertex):
    key = "projects/my-project/locations/us-central1/keyRings/ml/cryptoKeys/pipelines"
    compiled = compile_vertex(
        "pets", (*GCP, "gcp.network=projects/123/global/networks/vpc", f"gcp.encryption_key={key}")
    )

    (task,) = compiled.train_tasks().values()
    inputs = compiled.inputs(task)

    assert inputs["network"] == "{{$.pipeline_network}}"
    assert inputs["encryption_spec_key_name"] == "{{$.pipeline_encryption_key_name}}"
    (upload, *_) = compiled.named("model-upload")
    assert compiled.inputs(upload)["encryption_spec_key_name"] == key


# --- images --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_task_runs_in_an_image_of_the_experiment(compile_vertex, name):
    compiled = compile_vertex(name)
    trains = {id(t): f for f, t in compiled.all_train_tasks()}
    raw = raw_vertex(name)

    for _, task in compiled.tasks():
        executor = compiled.spec["deploymentSpec"]["executors"].get(
            compiled.component(task).get("executorLabel", ""), {}
        )
        if "container" not in executor:
            continue  # importers and sub-DAGs
        image = executor["container"]["image"]
        if id(task) in trains:
            assert image == expected_image(raw, trains[id(task)])
        else:
            assert image == IMAGES["cpu"], task["taskInfo"]["name"]
    assert "gcr.io/ml-pipeline" not in compiled.text


def test_gcpc_launchers_run_with_the_vertex_extra(compile_vertex):
    """GCPC's launchers run in our images, which install the vertex extra; importing each
    module the package names is what `python3 -m MODULE` does first."""
    compiled = compile_vertex("pets", DEPLOY)
    modules = {
        container["command"][3]
        for executor in compiled.spec["deploymentSpec"]["executors"].values()
        if (container := executor.get("container"))
        and container["command"][:3] == ["python3", "-u", "-m"]
    }

    assert CUSTOM_JOB_LAUNCHER in modules and UPLOAD_LAUNCHER in modules
    assert len(modules) == 4  # custom job, upload, create endpoint, deploy
    for module in modules:
        importlib.import_module(module)


# --- Model Registry and endpoint -----------------------------------------------------------


def gate_passed(compiled: Spec) -> dict[str, Any]:
    root = compiled.spec["root"]["dag"]["tasks"]
    (condition,) = [t for t in root.values() if "triggerPolicy" in t]
    return compiled.component(condition)["dag"]["tasks"]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_the_best_model_is_uploaded_after_the_gate(compile_vertex, name):
    compiled = compile_vertex(name)
    guarded = gate_passed(compiled)

    assert {"register-local", "vertex-registration"} <= set(guarded)
    uploads = compiled.named("model-upload")
    # One upload as a new version of the registered model, one as the model's first version.
    assert len(uploads) == 2
    with_parent = [u for u in uploads if "parent_model" in u["inputs"].get("artifacts", {})]
    assert len(with_parent) == 1
    for upload in uploads:
        inputs = compiled.inputs(upload)
        assert inputs["location"] == "us-central1"
        assert "unmanaged_container_model" in upload["inputs"]["artifacts"]
        parameters = upload["inputs"]["parameters"]
        assert parameters["display_name"]["componentInputParameter"].endswith("model_name")
        # the register step's record decides them: champion and default when it promoted
        aliases = parameters["version_aliases"]["componentInputParameter"]
        assert aliases == "pipelinechannel--vertex-registration-version_aliases"
    assert not compiled.named("model-deploy")
    assert not compiled.named("endpoint-create")


def test_the_serving_artifact_is_imported_with_its_container(compile_vertex):
    compiled = compile_vertex("cats_vs_dogs")  # keras and transformers: decided when it runs
    executors = compiled.spec["deploymentSpec"]["executors"].values()
    importers = {
        e["importer"]["typeSchema"]["schemaTitle"]: e["importer"]
        for e in executors
        if "importer" in e
    }

    serving = importers["google.UnmanagedContainerModel"]
    assert serving["artifactUri"] == {"runtimeParameter": "uri"}
    name = "{{$.inputs.parameters['metadata']}}"  # the model_name parameter, when it runs
    # our server in the cpu image, whatever the framework; Vertex AI says the port and model
    assert serving["metadata"] == {
        "containerSpec": {
            "imageUri": IMAGES["cpu"],
            "command": ["python", "-m", "components.serve"],
            "args": ["--host", "0.0.0.0", "--name", name],
            "ports": [{"containerPort": 8080}],
            "healthRoute": f"/v1/models/{name}",
            "predictRoute": f"/v1/models/{name}:predict",
        }
    }
    assert importers["google.VertexModel"]["metadata"] == {
        "resourceName": "{{$.inputs.parameters['metadata']}}"
    }
    (plan,) = compiled.named("vertex-registration")
    inputs = compiled.inputs(plan)
    assert "keras_serving_image" not in inputs and "transformers_serving_image" not in inputs
    assert inputs["endpoint_name"] == ""
    assert plan["cachingOptions"] == {}  # looks at the registry as it is at run time


def test_the_serving_image_follows_the_config(compile_vertex):
    compiled = compile_vertex(
        "cats_vs_dogs",
        (
            *GCP,
            "gcp.region=europe-west4",
            f"register.serving_image={REGISTRY}/serve:1",
            "register.aliases=[production, candidate-2]",
        ),
    )
    executors = compiled.spec["deploymentSpec"]["executors"].values()
    (serving,) = [
        e["importer"]
        for e in executors
        if e.get("importer", {}).get("typeSchema", {}).get("schemaTitle")
        == "google.UnmanagedContainerModel"
    ]
    (plan,) = compiled.named("vertex-registration")

    assert serving["metadata"]["containerSpec"]["imageUri"] == f"{REGISTRY}/serve:1"
    assert compiled.inputs(plan)["location"] == "europe-west4"
    assert compiled.parameters["model_aliases"]["defaultValue"] == ["production", "candidate-2"]


def test_deploy_creates_or_reuses_an_endpoint(compile_vertex):
    compiled = compile_vertex(
        "mnist", (*GCP, "register.deploy=true", "register.serving_machine_type=n1-standard-2")
    )

    (plan,) = compiled.named("vertex-registration")
    (create,) = compiled.named("endpoint-create")
    (deploy,) = compiled.named("model-deploy")

    assert compiled.inputs(plan)["endpoint_name"] == "mnist-classifier-endpoint"
    assert compiled.inputs(create)["display_name"] == "mnist-classifier-endpoint"
    inputs = compiled.inputs(deploy)
    assert inputs["dedicated_resources_machine_type"] == "n1-standard-2"
    assert inputs["dedicated_resources_min_replica_count"] == 1
    assert inputs["traffic_split"] == {"0": 100}
    # only a version the register step promoted is deployed: the deploy's sub-DAG is entered
    # on the plan's `promoted` output
    (promoted,) = [
        task
        for _, task in compiled.tasks()
        if "model-deploy" in json.dumps(compiled.component(task).get("dag", {}))
        and "triggerPolicy" in task
    ]
    condition = promoted["triggerPolicy"]["condition"]
    assert "vertex-registration-promoted" in condition and "== true" in condition
    # the model from whichever upload ran, the endpoint found or created
    artifacts = deploy["inputs"]["artifacts"]
    model = artifacts["model"]["componentInputArtifact"]
    passed_in = promoted["inputs"]["artifacts"][model]["taskOutputArtifact"]
    assert passed_in["producerTask"].startswith("condition-branches")
    assert artifacts["endpoint"]["taskOutputArtifact"]["producerTask"].startswith(
        "condition-branches"
    )
    assert deploy["cachingOptions"] == {}


# --- the package ---------------------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch):
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_the_package_loads_in_aiplatform_pipeline_job(compile_vertex, offline, name):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform

    compiled = compile_vertex(name)

    job = aiplatform.PipelineJob(
        display_name=f"imgclf-{compiled.experiment.name}",
        template_path=compiled.path,
        pipeline_root="gs://my-bucket/pipeline-root",
        project="my-project",
        location="us-central1",
        credentials=AnonymousCredentials(),
        enable_caching=False,
    )

    assert job.pipeline_spec["pipelineInfo"]["name"] == f"imgclf-{compiled.experiment.name}"
    assert job.runtime_config.gcs_output_directory == "gs://my-bucket/pipeline-root"
    tasks = job.pipeline_spec["root"]["dag"]["tasks"]
    assert dict(tasks["ingest"]["cachingOptions"]) == {"enableCache": False}
    assert job.job_id.startswith(f"imgclf-{compiled.experiment.name}-")


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_no_credentials_in_the_package(compile_vertex, name, credentials):
    compiled = compile_vertex(name)

    assert not credentials.search(compiled.text), credentials.search(compiled.text)


def test_no_credentials_in_a_package_that_deploys(compile_vertex, credentials):
    compiled = compile_vertex("pets", DEPLOY)

    assert compiled.named("model-deploy")
    assert not credentials.search(compiled.text), credentials.search(compiled.text)


@pytest.mark.parametrize("target", ["local", "kfp"])
def test_the_other_targets_keep_the_folder_registry_only(tmp_path, target):
    experiment = load_experiment("pets", list(GCP))
    path = get_target(target, experiment, RunOptions(runs_dir=tmp_path)).compile(
        tmp_path / "p.yaml"
    )

    text = path.read_text()

    assert "register-local" in text
    assert "google_cloud_pipeline_components" not in text
    assert "vertex-registration" not in text
    assert CUSTOM_JOB_LAUNCHER not in text


def test_tpu_chips_follow_the_topology():
    from pipelines.targets.vertex.hardware import tpu_chips

    assert [tpu_chips(t) for t in ("1x1", "2x2", "2x4", "4x4x4")] == [1, 4, 8, 64]
