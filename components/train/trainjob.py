"""Training on several nodes of a Kubernetes cluster: a Kubeflow Trainer v2 `TrainJob` (the
torch-distributed runtime) started from the train step's pod, waited for, and its Model
collected.

The kfp target asks for it by setting `TRAINJOB_ENV` on the train task to a `TrainJobLaunch`
(JSON). The step then stages the Dataset and a request file on a volume its pod and every
node of the TrainJob mount, creates the TrainJob through the Kubernetes API, follows its
conditions until `Complete` or `Failed`, and copies the chief's Model back into its own output.
The TrainJob is named after the run key (components/train/checkpoints.py), and its
checkpoints live on the volume under that key: a retried step finds a finished TrainJob and
only collects it, a running one and waits for it, a failed one and starts it again, resuming
from the checkpoints.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from components.common.model_card import ModelCard
from components.common.results import DatasetInfo
from components.spec import Strict
from components.train.checkpoints import run_key
from components.train.request import Request

TRAINJOB_ENV = "IMGCLF_TRAINJOB"
GROUP, VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
API_VERSION = f"{GROUP}/{VERSION}"
# The torch-distributed runtime's replicated job and container (infra/kind/trainer-runtime.yaml).
NODE = "node"
PATCH_MANAGER = "image-classification-pipelines"
PART_OF = {"app.kubernetes.io/part-of": "image-classification-pipelines"}
WORKER_MODULE = "components.train.transformers.worker"
MAX_NAME = 63  # the CRD's rule on metadata.name


class TrainJobLaunch(Strict):
    """How the train step runs as a TrainJob: set by the kfp target, read here."""

    namespace: str = "kubeflow"
    runtime: str = "imgclf-torch-distributed"
    runtime_kind: Literal["TrainingRuntime", "ClusterTrainingRuntime"] = "TrainingRuntime"
    nodes: int = Field(ge=2)
    procs_per_node: int = Field(ge=1)
    image: str
    gpus: int = Field(default=0, ge=0)
    cpu_limit: str | None = None
    memory_limit: str | None = None
    volume_claim: str
    mount_path: str = "/mnt/training"
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    poll_seconds: float = Field(default=10.0, gt=0)
    timeout_seconds: int = Field(default=7 * 86400, gt=0)


def launch_from_environment(env: Mapping[str, str] | None = None) -> TrainJobLaunch | None:
    env = os.environ if env is None else env
    text = env.get(TRAINJOB_ENV)
    return TrainJobLaunch.model_validate_json(text) if text else None


def job_name(key: str) -> str:
    """A TrainJob name (a DNS label of at most 63 characters starting with a letter)."""
    return f"imgclf-train-{key}"[:MAX_NAME]


def manifest(launch: TrainJobLaunch, name: str, request_path: str) -> dict[str, Any]:
    """The TrainJob: `numNodes` nodes of `procs_per_node` processes each, every node running
    torchrun on `request_path` (the runtime's torch plugin sets torchrun's PET_* settings)."""
    limits: dict[str, Any] = {}
    if launch.gpus:
        limits["nvidia.com/gpu"] = launch.gpus
    if launch.cpu_limit:
        limits["cpu"] = launch.cpu_limit
    if launch.memory_limit:
        limits["memory"] = launch.memory_limit
    trainer: dict[str, Any] = {
        "image": launch.image,
        "command": ["python", "-m", "torch.distributed.run", "-m", WORKER_MODULE, request_path],
        "numNodes": launch.nodes,
        "numProcPerNode": launch.procs_per_node,
        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}],
    }
    if limits:
        trainer["resourcesPerNode"] = {"limits": limits}
    pod: dict[str, Any] = {
        "containers": [
            {"name": NODE, "volumeMounts": [{"name": "training", "mountPath": launch.mount_path}]}
        ],
        "volumes": [
            {"name": "training", "persistentVolumeClaim": {"claimName": launch.volume_claim}}
        ],
    }
    if launch.node_selector:
        pod["nodeSelector"] = dict(launch.node_selector)
    if launch.tolerations:
        pod["tolerations"] = list(launch.tolerations)
    patch = {"replicatedJobs": [{"name": NODE, "template": {"spec": {"template": {"spec": pod}}}}]}
    return {
        "apiVersion": API_VERSION,
        "kind": "TrainJob",
        "metadata": {"name": name, "namespace": launch.namespace, "labels": dict(PART_OF)},
        "spec": {
            "runtimeRef": {"apiGroup": GROUP, "kind": launch.runtime_kind, "name": launch.runtime},
            "trainer": trainer,
            "runtimePatches": [
                {"manager": PATCH_MANAGER, "trainingRuntimeSpec": {"template": {"spec": patch}}}
            ],
        },
    }


def state(job: Mapping[str, Any]) -> tuple[str, str]:
    """("Complete" | "Failed" | "Running", message) from a TrainJob's status conditions."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return condition["type"], str(condition.get("message", ""))
    return "Running", ""


def _api() -> Any:
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi()


def _stage(launch: TrainJobLaunch, request: Request, key: str) -> tuple[Path, Request]:
    """The Dataset and the request on the shared volume; the request as the nodes see it."""

    folder = Path(launch.mount_path) / "jobs" / key
    dataset = folder / "dataset"
    if not dataset.is_dir():
        shutil.copytree(request.dataset_dir, folder / "dataset.partial", dirs_exist_ok=True)
        os.replace(folder / "dataset.partial", dataset)
    shared = dataclasses.replace(
        request,
        dataset_dir=str(dataset),
        model_dir=str(folder / "model"),
        checkpoint_dir=str(Path(launch.mount_path) / "checkpoints" / key),
        tensorboard_dir=str(folder / "tensorboard") if request.tensorboard_dir else "",
    )
    shared.write(folder / "request.json")
    return folder, shared


def train_in_trainjob(
    launch: TrainJobLaunch,
    request: Request,
    api: Any = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ModelCard:
    """Run `request` as a TrainJob (or follow the one a previous attempt started); collect."""
    from kubernetes.client.exceptions import ApiException

    api = api if api is not None else _api()
    fingerprint = DatasetInfo.read(request.dataset_dir).fingerprint
    key = run_key(request.spec, request.seed, fingerprint, request.fold)
    name = job_name(key)
    folder, shared = _stage(launch, request, key)
    where = (GROUP, VERSION, launch.namespace, PLURAL)
    try:
        job = api.get_namespaced_custom_object(*where, name)
    except ApiException as exc:
        if exc.status != 404:
            raise
        job = None
    if job is not None and state(job)[0] == "Failed":
        print(f"TrainJob {name} had failed; starting it again (it resumes)", flush=True)
        api.delete_namespaced_custom_object(*where, name)
        job = None
    if job is None:
        body = manifest(launch, name, str(folder / "request.json"))
        api.create_namespaced_custom_object(*where, body)
        print(f"created TrainJob {launch.namespace}/{name} ({launch.nodes} nodes)", flush=True)
    waited, shown = 0.0, ""
    while True:
        phase, message = state(api.get_namespaced_custom_object(*where, name))
        if phase != shown:
            print(f"TrainJob {name}: {phase} {message}".rstrip(), flush=True)
            shown = phase
        if phase == "Complete":
            break
        if phase == "Failed":
            raise RuntimeError(
                f"TrainJob {launch.namespace}/{name} failed: {message}; see its pods' logs "
                f"(kubectl -n {launch.namespace} logs -l jobset.sigs.k8s.io/jobset-name={name})"
            )
        if waited >= launch.timeout_seconds:
            raise RuntimeError(
                f"TrainJob {launch.namespace}/{name} did not finish in {launch.timeout_seconds} s"
            )
        sleep(launch.poll_seconds)
        waited += launch.poll_seconds
    shutil.copytree(shared.model_dir, request.model_dir, dirs_exist_ok=True)
    if request.tensorboard_dir and Path(shared.tensorboard_dir).is_dir():
        shutil.copytree(shared.tensorboard_dir, request.tensorboard_dir, dirs_exist_ok=True)
    return ModelCard.load(request.model_dir)
