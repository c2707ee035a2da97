"""Several machines per candidate: `resources.vertex.replica_count` compiles a two-pool Vertex AI
custom job (parsed strictly as CustomJobSpec); on the kfp target the train step carries a
Kubeflow Trainer TrainJob, checked against the Trainer v2 CRD schema (tests/schemas/), and
starts, follows and collects it through the Kubernetes API (a fake of it here)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.common.model_card import ModelCard
from components.spec import ModelSpec
from components.train.trainjob import (
    TRAINJOB_ENV,
    TrainJobLaunch,
    job_name,
    manifest,
    train_in_trainjob,
)
from components.train.transformers.trainer import Request
from pipelines.config import ConfigError, load_experiment
from pipelines.targets import get_target
from pipelines.targets.base import RunOptions

SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
SCHEMA = Path(__file__).parents[1] / "schemas" / "trainjob-v2.3.0.yaml"
TRANSFORMERS_IMAGE = "us-central1-docker.pkg.dev/my-project/imgclf/transformers:0123abc"
GCP = ("gcp.project=my-project", "gcp.bucket=gs://my-bucket")


def compile_documents(
    tmp_path: Path, target: str, overrides: tuple[str, ...]
) -> list[dict[str, Any]]:
    experiment = load_experiment("pets", [f"images.transformers={TRANSFORMERS_IMAGE}", *overrides])
    path = tmp_path / f"pets.{target}.yaml"
    get_target(target, experiment, RunOptions(runs_dir=tmp_path / "runs")).compile(path)
    return [d for d in yaml.load_all(path.read_text(), Loader=SafeLoader) if d is not None]


def worker_pools(spec: dict[str, Any]) -> list[list[dict[str, Any]]]:
    return [
        component["inputDefinitions"]["parameters"]["worker_pool_specs"]["defaultValue"]
        for component in spec["components"].values()
        if "worker_pool_specs" in component.get("inputDefinitions", {}).get("parameters", {})
    ]


def train_executor(spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (label,) = [k for k in spec["deploymentSpec"]["executors"] if k.startswith("exec-train")]
    return label, spec["deploymentSpec"]["executors"][label]["container"]


# --- vertex: the custom job's worker pools ---------------------------------------------------


def test_replica_count_compiles_a_chief_pool_and_a_worker_pool(tmp_path):
    from google.cloud.aiplatform_v1.types import CustomJobSpec
    from google.protobuf import json_format

    overrides = (*GCP, "resources.vertex.replica_count=3", "resources.vertex.spot=true")
    (spec,) = compile_documents(tmp_path, "vertex", overrides)

    (pools,) = worker_pools(spec)
    parsed = json_format.ParseDict(
        {"worker_pool_specs": pools}, CustomJobSpec.pb(CustomJobSpec()), ignore_unknown_fields=False
    )
    chief, workers = parsed.worker_pool_specs
    assert (chief.replica_count, workers.replica_count) == (1, 2)
    for pool in (chief, workers):
        assert pool.machine_spec.machine_type == "g2-standard-8"  # pets.yaml
        machine = json_format.MessageToDict(pool.machine_spec)
        assert (machine["acceleratorType"], machine["acceleratorCount"]) == ("NVIDIA_L4", 1)
        assert pool.container_spec.image_uri == TRANSFORMERS_IMAGE
    # the same command on every replica: the train step, which reads CLUSTER_SPEC
    assert list(chief.container_spec.command) == list(workers.container_spec.command)
    assert list(chief.container_spec.args) == list(workers.container_spec.args)


def test_one_replica_is_one_pool_or_a_plain_task(tmp_path):
    (spec,) = compile_documents(tmp_path, "vertex", (*GCP, "resources.vertex.spot=true"))
    assert [len(pools) for pools in worker_pools(spec)] == [1]
    (spec,) = compile_documents(tmp_path, "vertex", (*GCP, "resources.vertex.spot=false"))
    assert worker_pools(spec) == []  # a plain pipeline task
    overrides = (*GCP, "resources.vertex.spot=false", "resources.vertex.replica_count=2")
    (spec,) = compile_documents(tmp_path, "vertex", overrides)
    assert [len(pools) for pools in worker_pools(spec)] == [2]


def test_keras_candidates_on_several_machines_are_a_config_error():
    with pytest.raises(ConfigError) as error:
        load_experiment("digits", ["resources.vertex.replica_count=2"])
    message = str(error.value)
    assert "resources.vertex.replica_count: 2 machines train transformers models only" in message
    assert "small-cnn use keras" in message and "keras-team/keras#20585" in message
    with pytest.raises(ConfigError, match="resources.kfp.replica_count: 4 machines"):
        load_experiment("digits", ["resources.kfp.replica_count=4"])
    assert load_experiment("digits", ["resources.vertex.replica_count=1"]).models


# --- kfp: the TrainJob ---------------------------------------------------------------------


class SchemaError(AssertionError):
    pass


def check_schema(value: Any, schema: dict[str, Any], where: str = "") -> None:
    """Kubernetes' structural schema rules for `value`, strictly: a field the schema does not
    list is an error (the API server would prune it silently). CEL rules are not evaluated."""
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            raise SchemaError(f"{where}: {value!r} is neither an integer nor a string")
        return
    kind = schema.get("type")
    types = {
        "object": dict,
        "array": list,
        "string": str,
        "integer": int,
        "boolean": bool,
        "number": (int, float),
    }
    if kind and (
        not isinstance(value, types[kind]) or (kind == "integer" and isinstance(value, bool))
    ):
        raise SchemaError(f"{where}: {value!r} is not of type {kind}")
    if "enum" in schema and value not in schema["enum"]:
        raise SchemaError(f"{where}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise SchemaError(f"{where}: {value!r} does not match {schema['pattern']}")
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
            raise SchemaError(f"{where}: {value!r} has a length out of bounds")
    if isinstance(value, int) and "minimum" in schema and value < schema["minimum"]:
        raise SchemaError(f"{where}: {value} is below {schema['minimum']}")
    if isinstance(value, list):
        if len(value) > schema.get("maxItems", len(value)):
            raise SchemaError(f"{where}: more than {schema['maxItems']} items")
        for index, item in enumerate(value):
            check_schema(item, schema.get("items", {}), f"{where}[{index}]")
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                raise SchemaError(f"{where}: required field {name!r} is missing")
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for name, item in value.items():
            if name in properties:
                check_schema(item, properties[name], f"{where}.{name}")
            elif isinstance(extra, dict):
                check_schema(item, extra, f"{where}.{name}")
            elif properties and not schema.get("x-kubernetes-preserve-unknown-fields"):
                raise SchemaError(f"{where}: unknown field {name!r}")


@pytest.fixture(scope="module")
def trainjob_schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA.read_text())


def check_trainjob(job: dict[str, Any], schema: dict[str, Any]) -> None:
    check_schema(job, schema, "TrainJob")
    # the CRD's rules on the name (CEL, on the root), as written in the schema
    rules = [r["rule"] for r in schema.get("x-kubernetes-validations", [])]
    (pattern,) = [m.group(1) for r in rules if (m := re.search(r"matches\('(.+)'\)", r))]
    (limit,) = [int(m.group(1)) for r in rules if (m := re.search(r"<= (\d+)", r))]
    name = job["metadata"]["name"]
    if not re.fullmatch(pattern, name) or len(name) > limit:
        raise SchemaError(f"metadata.name {name!r} breaks the CRD's rules ({pattern}, <= {limit})")


@pytest.fixture(scope="module")
def kfp_documents(tmp_path_factory) -> list[dict[str, Any]]:
    overrides = (
        "resources.vertex.replica_count=2",
        "resources.kfp.gpus=2",
        "resources.kfp.memory_limit=32Gi",
        "resources.kfp.node_selector.pool=gpu",
        "resources.kfp.tolerations=[{key: nvidia.com/gpu, operator: Exists}]",
        "resources.kfp.retries=2",
    )
    return compile_documents(tmp_path_factory.mktemp("kfp"), "kfp", overrides)


def test_the_kfp_compile_carries_the_trainjob(kfp_documents, trainjob_schema):
    spec, platform = kfp_documents
    label, container = train_executor(spec)
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    launch = TrainJobLaunch.model_validate_json(env[TRAINJOB_ENV])
    name = job_name("0123456789ab")
    job = manifest(launch, name, f"{launch.mount_path}/jobs/0123456789ab/request.json")

    check_trainjob(job, trainjob_schema)
    trainer = job["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 2)
    assert trainer["image"] == container["image"] == TRANSFORMERS_IMAGE
    assert trainer["resourcesPerNode"]["limits"] == {"nvidia.com/gpu": 2, "memory": "32Gi"}
    assert trainer["command"][:3] == ["python", "-m", "torch.distributed.run"]
    assert job["spec"]["runtimeRef"]["name"] == "imgclf-torch-distributed"
    (patch,) = job["spec"]["runtimePatches"]
    (node,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod = node["template"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "gpu"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists"}]
    (volume,) = pod["volumes"]
    (mount,) = pod["containers"][0]["volumeMounts"]
    # the train step's pod mounts the same claim at the same place, and asks for no GPU
    executor = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][label]
    (pvc,) = executor["pvcMount"]
    assert pvc["constant"] == volume["persistentVolumeClaim"]["claimName"] == "imgclf-training"
    assert pvc["mountPath"] == mount["mountPath"] == launch.mount_path
    assert "nodeSelector" not in executor and "tolerations" not in executor
    assert "accelerator" not in container.get("resources", {})
    # retries stay on the step: a retried step follows or restarts the same TrainJob
    (train_task,) = [
        t
        for c in spec["components"].values()
        for t in c.get("dag", {}).get("tasks", {}).values()
        if t["componentRef"]["name"] == "comp-train"
    ]
    assert train_task["retryPolicy"]["maxRetryCount"] == 2


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        (("spec", "trainer", "numNodes"), "2"),
        (("spec", "trainer", "numNodez"), 2),
        (("spec", "runtimeRef", "name"), ""),
        (("metadata", "name"), "Imgclf_train"),
        (("spec", "runtimePatches", 0, "manager"), None),
    ],
)
def test_the_schema_check_rejects_a_bad_trainjob(kfp_documents, trainjob_schema, path, bad):
    """The control: the same check fails on a TrainJob with one wrong field."""
    spec, _ = kfp_documents
    _, container = train_executor(spec)
    env = {e["name"]: e["value"] for e in container["env"]}
    job = manifest(TrainJobLaunch.model_validate_json(env[TRAINJOB_ENV]), "imgclf-x", "/r.json")
    check_trainjob(job, trainjob_schema)
    parent: Any = job
    for key in path[:-1]:
        parent = parent[key]
    if bad is None:
        del parent[path[-1]]
    else:
        parent[path[-1]] = bad

    with pytest.raises(SchemaError):
        check_trainjob(job, trainjob_schema)


def test_kfp_replica_count_overrides_the_vertex_one(tmp_path):
    spec, _ = compile_documents(tmp_path, "kfp", ("resources.kfp.gpus=1",))
    _, container = train_executor(spec)
    assert TRAINJOB_ENV not in {e["name"] for e in container.get("env", [])}
    assert container["resources"]["accelerator"]["resourceCount"] == "1"

    spec, _ = compile_documents(
        tmp_path, "kfp", ("resources.vertex.replica_count=2", "resources.kfp.replica_count=1")
    )
    _, container = train_executor(spec)
    assert TRAINJOB_ENV not in {e["name"] for e in container.get("env", [])}
    spec, _ = compile_documents(tmp_path, "kfp", ("resources.kfp.replica_count=3",))
    _, container = train_executor(spec)
    env = {e["name"]: e["value"] for e in container["env"]}
    assert TrainJobLaunch.model_validate_json(env[TRAINJOB_ENV]).nodes == 3


# --- the train step's side: start, follow, collect ---------------------------------------------


class FakeTrainJobs:
    """CustomObjectsApi's TrainJob calls; a created job 'runs' by writing the chief's Model where
    its request file says, and reports `outcome` after `polls` looks."""

    def __init__(self, outcome: str = "Complete", polls: int = 2):
        self.jobs: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.outcome, self.polls, self.looks = outcome, polls, 0

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        from kubernetes.client.exceptions import ApiException

        assert (group, version, plural) == ("trainer.kubeflow.org", "v1alpha1", "trainjobs")
        if name not in self.jobs:
            raise ApiException(status=404, reason="Not Found")
        self.looks += 1
        job = self.jobs[name]
        if self.looks >= self.polls and "status" not in job:
            if self.outcome == "Complete":
                self.run(job)
            condition = {"type": self.outcome, "status": "True", "message": f"job {self.outcome}"}
            job["status"] = {"conditions": [condition]}
        return job

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        assert namespace == body["metadata"]["namespace"]
        self.created.append(body)
        self.jobs[body["metadata"]["name"]] = json.loads(json.dumps(body))

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name):
        self.deleted.append(name)
        del self.jobs[name]

    @staticmethod
    def run(job: dict[str, Any]) -> None:
        request = Request.read(job["spec"]["trainer"]["command"][-1])
        assert Path(request.dataset_dir, "dataset_info.json").is_file()
        card = ModelCard(
            framework="transformers",
            name=request.spec.name,
            seed=request.seed,
            class_names=["a", "b"],
            input_size=(32, 32),
            channels=3,
            preprocessing="normalize",
            mean=[0.5] * 3,
            std=[0.5] * 3,
            training={"processes": 4},
            history={"loss": [1.0]},
        )
        card.save(request.model_dir)
        Path(request.tensorboard_dir).mkdir(parents=True)
        Path(request.tensorboard_dir, "events").write_text("scalars")


@pytest.fixture
def staged(tmp_path: Path) -> tuple[TrainJobLaunch, Request]:
    dataset = tmp_path / "pod" / "dataset"
    dataset.mkdir(parents=True)
    (dataset / "dataset_info.json").write_text(json.dumps({"fingerprint": "abc"}))
    launch = TrainJobLaunch(
        nodes=2,
        procs_per_node=2,
        image="img:1",
        volume_claim="imgclf-training",
        mount_path=str(tmp_path / "volume"),
        poll_seconds=1,
        timeout_seconds=60,
    )
    spec = ModelSpec.model_validate(
        {"name": "vit", "framework": "transformers", "checkpoint": "google/vit-base-patch16-224"}
    )
    request = Request(
        str(dataset),
        spec,
        0,
        str(tmp_path / "pod" / "model"),
        str(tmp_path / "pod" / "ckpt"),
        str(tmp_path / "pod" / "tb"),
    )
    return launch, request


def fake_dataset_info(monkeypatch) -> None:
    import components.train.trainjob as trainjob

    class Info:
        fingerprint = "abc"

    monkeypatch.setattr(trainjob.DatasetInfo, "read", staticmethod(lambda folder: Info()))


def test_the_step_starts_the_trainjob_waits_and_collects_the_model(
    staged, monkeypatch, trainjob_schema
):
    fake_dataset_info(monkeypatch)
    launch, request = staged
    api, naps = FakeTrainJobs(polls=3), []

    card = train_in_trainjob(launch, request, api=api, sleep=naps.append)

    (created,) = api.created
    check_trainjob(created, trainjob_schema)
    assert card.training == {"processes": 4} and card.name == "vit"
    assert ModelCard.load(request.model_dir).history == {"loss": [1.0]}
    assert Path(request.tensorboard_dir, "events").read_text() == "scalars"
    assert naps == [1, 1]
    # the nodes read what the step staged on the shared volume, checkpoints under the run key
    shared = Request.read(created["spec"]["trainer"]["command"][-1])
    assert shared.dataset_dir.startswith(launch.mount_path)
    assert Path(shared.checkpoint_dir).parent == Path(launch.mount_path) / "checkpoints"
    assert Path(shared.checkpoint_dir).name in created["metadata"]["name"]

    # a retried step finds the finished TrainJob and only collects it
    again = train_in_trainjob(launch, request, api=api, sleep=naps.append)
    assert len(api.created) == 1 and again.name == "vit"


def test_a_failed_trainjob_fails_the_step_and_a_retry_starts_it_again(staged, monkeypatch):
    fake_dataset_info(monkeypatch)
    launch, request = staged
    api = FakeTrainJobs(outcome="Failed", polls=1)

    with pytest.raises(RuntimeError, match=r"TrainJob kubeflow/imgclf-train-\w+ failed: job Fail"):
        train_in_trainjob(launch, request, api=api, sleep=lambda s: None)

    api.outcome = "Complete"
    card = train_in_trainjob(launch, request, api=api, sleep=lambda s: None)
    assert api.deleted == [api.created[0]["metadata"]["name"]] and len(api.created) == 2
    assert card.name == "vit"


def test_a_trainjob_that_never_ends_times_out(staged, monkeypatch):
    fake_dataset_info(monkeypatch)
    launch, request = staged
    api = FakeTrainJobs(polls=10**6)
    with pytest.raises(RuntimeError, match="did not finish in 60 s"):
        train_in_trainjob(launch, request, api=api, sleep=lambda s: None)
