"""Where and on what each target trains: the `resources` section (Vertex AI machines and
accelerators, KFP cluster pods) and the `kfp` section (what the kfp target mounts and where it
writes on a KFP standalone cluster).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from components.spec import ModelSpec, Strict
from pipelines.config.accelerators import ACCELERATORS, TPU_TYPES

MAX_REPLICAS = 64
RESERVATION = re.compile(r"projects/[^/]+/zones/[^/]+/reservations/[^/]+")


def _whole_seconds(value: str) -> str:
    if not re.fullmatch(r"\d+s", value):
        raise ValueError("write the duration in seconds with an 's', e.g. 3600s")
    return value


class VertexResources(Strict):
    machine_type: str = "n1-standard-8"
    accelerator: str | None = None
    count: int = Field(default=1, ge=1, le=16)
    replica_count: int = Field(
        default=1,
        ge=1,
        le=MAX_REPLICAS,
        description="machines training each transformers candidate together (DDP by torchrun): "
        "a custom job whose worker pool 0 is the chief and pool 1 the other replica_count - 1, "
        "each with this machine_type, accelerator and count",
    )
    tpu_topology: str | None = Field(default=None, pattern=r"^\d+x\d+(x\d+)?$")
    spot: bool = False
    retries: int = Field(default=0, ge=0, le=10)
    cpu_limit: str | None = None
    memory_limit: str | None = None
    flex_start: bool = Field(
        default=False,
        description="Dynamic Workload Scheduler: queue until the accelerators are free, for up "
        "to max_wait_duration, then run on them",
    )
    max_wait_duration: str = Field(
        default="86400s",
        description="flex_start: longest wait for capacity, e.g. 3600s; 0s waits without limit",
    )
    reservation: str | None = Field(
        default=None,
        description="consume a Compute Engine reservation: 'any' for any matching one, or "
        "projects/PROJECT/zones/ZONE/reservations/NAME for a specific one",
    )

    @field_validator("max_wait_duration")
    @classmethod
    def _duration(cls, value: str) -> str:
        return _whole_seconds(value)

    @field_validator("reservation")
    @classmethod
    def _reservation(cls, value: str | None) -> str | None:
        if value is not None and value != "any" and not RESERVATION.fullmatch(value):
            raise ValueError(
                "use 'any' or a reservation's full name, "
                "projects/PROJECT/zones/ZONE/reservations/NAME"
            )
        return value

    @model_validator(mode="after")
    def _accelerator(self) -> VertexResources:
        if self.accelerator is not None and self.accelerator not in ACCELERATORS:
            raise ValueError(
                f"accelerator '{self.accelerator}' is unknown; use one of {', '.join(ACCELERATORS)}"
            )
        if self.tpu_topology and not self.is_tpu:
            raise ValueError("tpu_topology needs a TPU accelerator (e.g. TPU_V5_LITEPOD)")
        if self.is_tpu and not self.tpu_topology:
            raise ValueError(f"{self.accelerator} needs tpu_topology (e.g. 2x2)")
        if self.spot and self.flex_start:
            raise ValueError("spot and flex_start are two scheduling strategies; keep one of them")
        if self.reservation and (self.spot or self.flex_start):
            raise ValueError(
                "a reservation is consumed by on-demand VMs; drop spot/flex_start or the reservation"
            )
        if self.flex_start and not self.accelerator:
            raise ValueError(
                "flex_start waits for accelerators; set accelerator (e.g. NVIDIA_L4) or drop flex_start"
            )
        return self

    @property
    def is_tpu(self) -> bool:
        return self.accelerator in TPU_TYPES


class Toleration(Strict):
    key: str
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None

    @model_validator(mode="after")
    def _value_with_equal_only(self) -> Toleration:
        # Kubernetes rejects the pod (at run time, on the cluster) otherwise.
        if self.operator == "Exists" and self.value is not None:
            raise ValueError(
                f"toleration '{self.key}': operator Exists matches any value; "
                "drop 'value' or use operator: Equal"
            )
        return self


KIND_TRAINING_PVC = "imgclf-training"  # created by infra/kind/trainer.sh (KIND_TRAINER=1)
KIND_TRAINING_RUNTIME = "imgclf-torch-distributed"  # the same script's TrainingRuntime


class KfpResources(Strict):
    """Resources of the training step on a KFP cluster (Kubernetes names)."""

    gpus: int = Field(default=0, ge=0, le=16, description="nvidia.com/gpu per training pod")
    replica_count: int | None = Field(
        default=None,
        ge=1,
        le=MAX_REPLICAS,
        description="nodes training each transformers candidate together, as a Kubeflow "
        "Trainer TrainJob started by the train step; null: resources.vertex.replica_count",
    )
    training_pvc: str = Field(
        default=KIND_TRAINING_PVC,
        description="replica_count > 1: PVC that the train step and the TrainJob's nodes mount "
        "at /mnt/training (dataset, checkpoints, the chief's Model); every node must be able to "
        "mount it (ReadWriteMany, or one node)",
    )
    training_runtime: str = Field(
        default=KIND_TRAINING_RUNTIME,
        description="replica_count > 1: the torch-distributed TrainingRuntime, in the KFP "
        "namespace, that the TrainJob runs",
    )
    cpu_limit: str | None = None
    memory_limit: str | None = None
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="node labels the training pod must run on"
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="taints the training pod tolerates (e.g. GPU nodes)"
    )
    retries: int = Field(
        default=0,
        ge=0,
        le=10,
        description="times a failed training pod (e.g. on a preempted spot node) is started "
        "again; it resumes from its checkpoints",
    )
    retry_max_duration: str = Field(
        default="604800s",
        description="retries: Argo retries no more, and ends a retried pod, this long after the "
        "first attempt started; keep it above the whole training time",
    )

    @field_validator("retry_max_duration")
    @classmethod
    def _duration(cls, value: str) -> str:
        return _whole_seconds(value)


KFP_DEFAULT_PIPELINE_ROOT = "minio://mlpipeline/v2/artifacts"
KFP_PIPELINE_ROOT_SCHEMES = ("minio", "s3", "gs")
KIND_REGISTRY_PVC = "imgclf-registry"  # created by infra/kind (storage.yaml)
KIND_CONTEXT = "kind-imgclf"  # the kubectl context of infra/kind's cluster (common.sh)
K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class Kfp(Strict):
    """Where the kfp target puts things on a KFP standalone cluster (e.g. infra/kind).

    These settings go through kfp-kubernetes into the kfp compile only: Vertex rejects them.
    """

    pipeline_root: str = Field(
        default=KFP_DEFAULT_PIPELINE_ROOT,
        description="artifact store of the runs; minio:// is the cluster's own object store "
        "(SeaweedFS behind the MinIO-compatible endpoint in KFP 2.17)",
    )
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = Field(
        default="IfNotPresent",
        description="IfNotPresent runs the images `kind load` put on the nodes (Kubernetes "
        "would otherwise pull :latest tags from a registry)",
    )
    registry_pvc: str | None = Field(
        default=KIND_REGISTRY_PVC,
        description="PVC mounted at /mnt/registry in the register step; null keeps the "
        "registry in the step's pod, which is gone when the step ends",
    )
    data_pvc: str | None = Field(
        default=None,
        description="PVC mounted at /mnt/data in the ingest step, for folder:/mnt/data/... sources",
    )
    kube_context: str = Field(
        default=KIND_CONTEXT,
        description="kubectl context of the cluster; with resources.kfp.gpus, the CLI asks its "
        "nodes (kubectl get nodes) whether one offers nvidia.com/gpu before compiling",
    )
    gpu_nodes: bool | None = Field(
        default=None,
        description="whether a node of the cluster offers nvidia.com/gpu; null asks the cluster "
        "through kube_context (and says nothing when kubectl cannot answer)",
    )

    @field_validator("pipeline_root")
    @classmethod
    def _object_store_uri(cls, value: str) -> str:
        scheme, sep, rest = value.partition("://")
        if not sep or scheme not in KFP_PIPELINE_ROOT_SCHEMES or not rest.strip("/"):
            raise ValueError(
                "use an object store URI the cluster writes to: "
                + ", ".join(f"{s}://BUCKET/PATH" for s in KFP_PIPELINE_ROOT_SCHEMES)
                + f" (the kind cluster's own store: {KFP_DEFAULT_PIPELINE_ROOT})"
            )
        return value.rstrip("/")

    @field_validator("registry_pvc", "data_pvc")
    @classmethod
    def _pvc_name(cls, value: str | None) -> str | None:
        if value is not None and not K8S_NAME.match(value):
            raise ValueError(
                "not a PersistentVolumeClaim name: use lower-case letters, digits, '-' and '.', "
                "starting and ending with a letter or digit (e.g. imgclf-registry)"
            )
        return value


class Resources(Strict):
    vertex: VertexResources = VertexResources()
    kfp: KfpResources = KfpResources()

    @property
    def kfp_replicas(self) -> int:
        """The TrainJob's nodes on the kfp target: its own setting, else the vertex one."""
        if self.kfp.replica_count is not None:
            return self.kfp.replica_count
        return self.vertex.replica_count


def check_replicas(resources: Resources, models: list[ModelSpec]) -> None:
    """Training on several machines is for transformers candidates (see the README's design
    notes: Keras 3 on TensorFlow does not train under MultiWorkerMirroredStrategy)."""
    replicas = max(resources.vertex.replica_count, resources.kfp_replicas)
    keras = [m.name for m in models if m.framework == "keras"]
    if replicas > 1 and keras:
        field = (
            "resources.vertex.replica_count"
            if resources.vertex.replica_count > 1
            else "resources.kfp.replica_count"
        )
        raise ValueError(
            f"{field}: {replicas} machines train transformers models only; {', '.join(keras)} "
            "use keras, which trains on one machine (all its GPUs, with MirroredStrategy): "
            "Keras 3 on TensorFlow does not train under MultiWorkerMirroredStrategy "
            "(keras-team/keras#20585). Set it to 1 or move the keras models to an experiment "
            "of their own"
        )
