"""The experiment schema: one typed, validated config per run.

An experiment file states only what differs from the defaults below. It is validated once,
before anything is compiled or submitted; every error names the field, the bad value and
what is allowed. The step configs it is made of (data, models and their recipes) are the steps' own
vocabulary from `components/spec/`; this module adds targets, resources and registration.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from components.common.images import BASE_IMAGE
from components.spec import (
    SLUG_PATTERN,
    DataConfig,
    MetricName,
    ModelSpec,
    OnFailure,
    Slug,
    Strict,
    metric_unavailable,
    min_input_side,
)
from components.spec.champion import ChampionPolicy
from components.spec.export import ExportConfig, export_formats_for
from pipelines.experiment_file import (
    ConfigError,
    clip,
    did_you_mean,
    parse_yaml,
    read_experiment_text,
)

__all__ = ["ConfigError", "Experiment", "load_experiment"]

EXPERIMENTS_DIR = Path(__file__).parent / "experiments"

GPU_TYPES = (
    "NVIDIA_TESLA_T4",
    "NVIDIA_TESLA_V100",
    "NVIDIA_TESLA_P100",
    "NVIDIA_TESLA_A100",
    "NVIDIA_A100_80GB",
    "NVIDIA_L4",
    "NVIDIA_H100_80GB",
    "NVIDIA_H100_MEGA_80GB",
    "NVIDIA_H200_141GB",
)
TPU_TYPES = ("TPU_V5_LITEPOD", "TPU_V6E", "TPU_V5P")
MAX_SEED = 2**32 - 1  # numpy's and TensorFlow's seeds are unsigned 32-bit
# Sources whose relative paths are read from the experiment file's folder.
PATH_SCHEMES = ("folder", "csv", "npz")
RESERVATION = re.compile(r"projects/[^/]+/zones/[^/]+/reservations/[^/]+")


class Reference(Strict):
    """What the reference system reached on the test set."""

    metric: MetricName = "accuracy"
    value: float = Field(ge=0.0, le=1.0)
    note: str | None = None


class Compare(Strict):
    """How candidates are compared."""

    on_failure: OnFailure = Field(
        default="stop",
        description="a candidate x seed whose training or evaluation fails: its task fails "
        "(retried where set, never cached) on every target; stop ends the run there; continue "
        "still compares (and may register) the others, names it in the summary, and the run "
        "ends PARTIAL (exit code 4)",
    )


class Gate(Strict):
    """The best candidate must reach `min` before it is registered, and be no worse than the
    registered champion (`champion`) before it is promoted."""

    metric: MetricName = "accuracy"
    min: float = Field(default=0.0, ge=0.0, le=1.0)
    champion: ChampionPolicy = ChampionPolicy()


def _whole_seconds(value: str) -> str:
    if not re.fullmatch(r"\d+s", value):
        raise ValueError("write the duration in seconds with an 's', e.g. 3600s")
    return value


MAX_REPLICAS = 64


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
        if self.accelerator is not None and self.accelerator not in GPU_TYPES + TPU_TYPES:
            raise ValueError(
                f"accelerator '{self.accelerator}' is unknown; use one of "
                f"{', '.join(GPU_TYPES + TPU_TYPES)}"
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


class Images(Strict):
    """Container images of the steps (each has this project installed)."""

    cpu: str = BASE_IMAGE
    gpu: str = "image-classification-gpu:latest"
    tpu: str = "image-classification-tpu:latest"
    transformers: str = "image-classification-transformers:latest"


GCS_URI = r"^gs://[a-z0-9][a-z0-9._-]{1,220}(/.*)?$"


class Gcp(Strict):
    project: str | None = None
    region: str = "us-central1"
    bucket: str | None = Field(default=None, pattern=GCS_URI)
    service_account: str | None = None
    network: str | None = None
    encryption_key: str | None = None
    experiment: str | None = Field(
        default=None,
        description="Vertex AI Experiments name the run is recorded in (created when missing)",
    )
    tensorboard: str | None = Field(
        default=None,
        description="Vertex AI TensorBoard the training steps stream their logs to, "
        "projects/PROJECT/locations/REGION/tensorboards/ID",
    )

    @field_validator("experiment")
    @classmethod
    def _experiment_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,127}", value):
            raise ValueError(
                "use lower-case letters, digits and '-', starting with a letter or digit "
                "(at most 128 characters), e.g. pets-baselines"
            )
        return value

    @field_validator("tensorboard")
    @classmethod
    def _tensorboard_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(
            r"projects/[^/]+/locations/[^/]+/tensorboards/[^/]+", value
        ):
            raise ValueError(
                "use the TensorBoard's full name, projects/PROJECT/locations/REGION/tensorboards/ID "
                "(terraform output tensorboard)"
            )
        return value


MLFLOW_URI_ENV = "MLFLOW_TRACKING_URI"  # the default of tracking.mlflow, read when loading


class Tracking(Strict):
    """Experiment trackers the runs are recorded in, beside TensorBoard (and Vertex AI
    Experiments, `gcp.experiment`, on the vertex target)."""

    mlflow: str | None = Field(
        default=None,
        description="MLflow tracking URI (e.g. http://127.0.0.1:5000) the steps record each run "
        f"in; unset: {MLFLOW_URI_ENV} when it is set; '' records nothing",
    )
    mlflow_experiment: str | None = Field(
        default=None, description="MLflow experiment the runs go into (default: the name)"
    )

    @field_validator("mlflow")
    @classmethod
    def _tracking_uri(cls, value: str | None) -> str | None:
        if value and value != "databricks" and not re.fullmatch(r"[a-z][a-z0-9+.-]*:.+", value):
            raise ValueError(
                "use a tracking URI with its scheme, e.g. http://127.0.0.1:5000, "
                "https://mlflow.example.com or databricks"
            )
        return value


class BatchPredict(Strict):
    """Vertex: a batch prediction job on the registered model, after registration.

    Instances are JSON Lines in the serving container's format (components.serve): one image per
    line, `{"image_bytes": {"b64": "<base64 of the image file>"}}`.
    """

    source: str = Field(
        description="JSON Lines file(s) of instances, gs://BUCKET/PATH (wildcards allowed)",
    )
    destination: str = Field(description="folder the predictions go under, gs://BUCKET/PATH")
    machine_type: str = "n1-standard-4"
    replicas: int = Field(default=1, ge=1, le=100)

    @field_validator("source", "destination")
    @classmethod
    def _gcs_uri(cls, value: str) -> str:
        if not re.fullmatch(GCS_URI, value):
            raise ValueError(
                "use a Cloud Storage URI, gs://BUCKET/PATH (e.g. gs://my-bucket/batch/in-*.jsonl)"
            )
        return value


class Register(Strict):
    name: Slug
    aliases: list[str] = Field(default_factory=list)
    allow_class_change: bool = Field(
        default=False,
        description="register a version whose class names differ from the latest version's "
        "(refused otherwise: the versions of one name should predict the same classes)",
    )
    deploy: bool = False
    endpoint: str | None = Field(
        default=None,
        description="deploy: display name of the Vertex endpoint to deploy to, created when "
        "missing (default <name>-endpoint)",
    )
    serving_machine_type: str = Field(
        default="n1-standard-4", description="deploy: machine type of the endpoint's replica"
    )
    serving_image: str | None = Field(
        default=None,
        description="Vertex: the serving container of registered models, which runs "
        "python -m components.serve (the KServe v1 protocol) on AIP_HTTP_PORT (default images.cpu)",
    )
    batch_predict: BatchPredict | None = None


def check_keras_input(model: ModelSpec, index: int, data: DataConfig) -> None:
    """A keras model is built for an input its architecture accepts, and imagenet weights get
    the 3 channels they were trained on: both otherwise fail only when the step builds it."""
    if model.framework != "keras" or model.architecture is None:
        return
    knobs = model.knobs()
    side = knobs.input_size if knobs.input_size is not None else min(data.image_size)
    smallest = min_input_side(model.architecture, knobs)
    if side < smallest:
        given = (
            f"params.input_size {side}"
            if knobs.input_size is not None
            else f"data.image_size {list(data.image_size)}"
        )
        raise ValueError(
            f"models.{index}.params.input_size: model '{model.name}': {model.architecture} "
            f"takes inputs of at least {smallest}x{smallest} and {given} is smaller; "
            f"--set models.{index}.params.input_size={smallest} (the input pipeline resizes "
            f"to it) or --set data.image_size=[{smallest},{smallest}]"
        )
    if model.weights == "imagenet" and data.channels != 3:
        raise ValueError(
            f"models.{index}.weights: model '{model.name}': imagenet weights take 3-channel "
            f"images and data.channels is {data.channels}; --set data.channels=3 (ingest "
            f"converts) or --set models.{index}.weights=none"
        )


def weights_problems(experiment: Experiment, not_here: tuple[str, ...] = ()) -> list[str]:
    """Local `models[].weights` files that do not exist (checked before compiling; a path
    below `not_here` exists only where the steps run, a gs:// URI only in the bucket)."""
    problems = []
    for index, model in enumerate(experiment.models):
        weights = model.weights
        if model.framework != "keras" or weights in ("none", "imagenet") or "://" in weights:
            continue
        if weights.startswith(not_here):
            continue
        path = Path(weights).expanduser()
        if not path.is_file():
            what = "is a folder, not a weights file" if path.is_dir() else "does not exist"
            problems.append(
                f"models.{index}.weights: {weights} {what} (model '{model.name}'); give an "
                f"existing keras weights file (--set models.{index}.weights=PATH), or "
                f"--set models.{index}.weights=imagenet|none"
            )
    return problems


class Experiment(Strict):
    """The whole experiment: what to train on, which candidates, and where to run it."""

    name: Slug = "experiment"
    description: str = ""
    reference: Reference | None = None
    data: DataConfig
    models: list[ModelSpec] = Field(min_length=1)
    seeds: list[Annotated[int, Field(ge=0, le=MAX_SEED)]] = Field(
        default_factory=lambda: [0], min_length=1
    )
    gate: Gate = Gate()
    compare: Compare = Compare()
    resources: Resources = Resources()
    images: Images = Images()
    gcp: Gcp = Gcp()
    kfp: Kfp = Kfp()
    # Always present: `_default_registration` names it after the experiment when the file does not.
    registration: Register = Field(alias="register")
    export: ExportConfig | None = Field(
        default=None, description="deployable formats of the best model, measured and gated"
    )
    tracking: Tracking = Tracking()

    @model_validator(mode="before")
    @classmethod
    def _default_registration(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        given = data.get("register", data.get("registration"))
        default = f"{data.get('name', 'experiment')}-classifier"[:40].strip("-")
        if given is None:
            data = {k: v for k, v in data.items() if k != "registration"}
            data["register"] = {"name": default}
        elif isinstance(given, dict) and "name" not in given:
            # `--set register.allow_class_change=true` on a file without a register section
            data = {k: v for k, v in data.items() if k != "registration"}
            data["register"] = {"name": default, **given}
        return data

    @field_validator("models")
    @classmethod
    def _unique_names(cls, models: list[ModelSpec]) -> list[ModelSpec]:
        names = [m.name for m in models]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"model names must be unique; repeated: {', '.join(duplicates)}")
        return models

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds must be distinct (each seed is one repeat)")
        return seeds

    @model_validator(mode="after")
    def _cross_checks(self) -> Experiment:
        for index, model in enumerate(self.models):
            check_keras_input(model, index, self.data)
        check_replicas(self.resources, self.models)
        searched = [m.name for m in self.models if m.search is not None]
        if searched and not self.data.splits.validation:
            raise ValueError(
                f"{', '.join(searched)} search on the validation split; set "
                "data.splits.validation above 0 (e.g. 0.1)"
            )
        if self.resources.vertex.is_tpu:
            hf = [m.name for m in self.models if m.framework == "transformers"]
            if hf:
                raise ValueError(
                    f"TPU training is supported for keras models only; {', '.join(hf)} use "
                    "transformers: train them on a GPU (resources.vertex.accelerator: NVIDIA_L4) "
                    "or use a keras architecture"
                )
        if self.export is not None:
            self._check_export(self.export)
        return self

    def _check_export(self, export: ExportConfig) -> None:
        # The best candidate is only known at run time, so every candidate must export.
        for framework in self.frameworks():
            missing = export.unsupported(framework)
            if missing:
                names = [m.name for m in self.models if m.framework == framework]
                raise ValueError(
                    f"export.formats: {', '.join(missing)} cannot be made from {framework} "
                    f"models ({', '.join(names)}); {framework} models export to "
                    f"{', '.join(export_formats_for(framework))}: remove the others"
                )

    def candidates(self) -> list[dict[str, Any]]:
        """Every model without a search x seed, as the loop items of the pipeline (keys must not
        clash with PipelineChannel attributes such as `name`)."""
        return [
            {"model_spec": m.model_dump(mode="json", exclude_none=True), "seed": seed}
            for m in self.models
            if m.search is None
            for seed in self.seeds
        ]

    def planned_runs(self) -> list[dict[str, Any]]:
        """Every candidate x seed the run compares (a searched one by its winner), as the
        compare step expects them: the ones without a result are its failed runs."""
        return [{"name": m.name, "seed": seed} for m in self.models for seed in self.seeds]

    def searched(self) -> list[ModelSpec]:
        """The models with a search: searched on the first seed, the winner trained on all."""
        return [m for m in self.models if m.search is not None]

    def frameworks(self) -> list[str]:
        return sorted({m.framework for m in self.models})


# --- loading -------------------------------------------------------------------------------


def list_experiments() -> dict[str, str]:
    """Name -> one-line description of every bundled experiment."""
    result = {}
    for path in sorted(EXPERIMENTS_DIR.glob("*.yaml")):
        raw = yaml.safe_load(path.read_text()) or {}
        result[path.stem] = str(raw.get("description", "")).strip()
    return result


def resolve_experiment_path(experiment: str) -> Path:
    path = Path(experiment)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"experiment file {experiment} does not exist")
        return path
    bundled = EXPERIMENTS_DIR / f"{experiment}.yaml"
    if not bundled.is_file():
        names = list(list_experiments())
        raise ConfigError(
            f"unknown experiment '{experiment}';{did_you_mean(experiment, names)} use a YAML "
            f"path or one of: {', '.join(names)}"
        )
    return bundled


def parse_override(override: str) -> tuple[list[str | int], Any]:
    """`a.b.0.c=value` -> (['a', 'b', 0, 'c'], parsed YAML scalar)."""
    key, sep, raw = override.partition("=")
    shown = f"--set {clip(override)!r}"
    if not sep or not key.strip():
        raise ConfigError(f"{shown}: expected KEY=VALUE, e.g. --set models.0.epochs=1")
    parts: list[str | int] = []
    for part in key.strip().split("."):
        if not part:
            raise ConfigError(f"{shown}: empty component in key '{clip(key)}'")
        parts.append(int(part) if re.fullmatch(r"\d+", part) else part)
    value = parse_yaml(raw, shown) if raw.strip() else ""
    return parts, value


def apply_override(raw: dict[str, Any], override: str) -> list[str | int]:
    """Set the field `override` names in `raw`; return its path."""
    path, value = parse_override(override)
    shown = f"--set {clip(override)!r}"
    node: Any = raw
    for depth, part in enumerate(path[:-1]):
        here = ".".join(str(p) for p in path[: depth + 1])
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                size = len(node) if isinstance(node, list) else 0
                raise ConfigError(f"{shown}: '{here}' is out of range (the list has {size} items)")
            node = node[part]
        else:
            if not isinstance(node, dict):
                raise ConfigError(f"{shown}: '{here}' is not a mapping")
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last > len(node):
            raise ConfigError(f"{shown}: index {last} is out of range")
        if last == len(node):
            node.append(value)
        else:
            node[last] = value
    else:
        if not isinstance(node, dict):
            raise ConfigError(f"{shown}: cannot set '{last}' on a non-mapping")
        node[last] = value
    return path


SLUG_RULE = (
    "names may hold lower-case letters, digits and '-' (not '_'), start and end with a letter "
    "or digit, and have at most 40 characters"
)


def format_validation_error(
    exc: ValidationError, source: str, overrides: dict[str, list[str | int]] | None = None
) -> str:
    """One line per problem: the field, what is wrong, the value (cut short), who set it.

    `overrides` maps each `--set` argument to the field path it set: a problem in (or below)
    such a field is blamed on that `--set`, not on the file.
    """
    lines = []
    blamed = 0
    for error in exc.errors():
        loc = list(error["loc"])
        field = ".".join(str(p) for p in loc) or "(top level)"
        value = error.get("input")
        shown = (
            ""
            if error["type"] in ("missing",) or isinstance(value, dict)
            else f" (got {clip(repr(value))})"
        )
        # The last --set that wrote this field, or a section above or below it.
        blame = next(
            (
                f" [from --set {clip(override)}]"
                for override, path in reversed((overrides or {}).items())
                if loc and (loc[: len(path)] == path or path[: len(loc)] == loc)
            ),
            "",
        )
        blamed += bool(blame)
        lines.append(f"  {field}: {clip(_message(error, loc), 400)}{shown}{blame}")
    origin = f"--set ({source})" if blamed == len(lines) else source
    return "\n".join([f"{origin}: {exc.error_count()} problem(s) in the experiment", *lines])


def _message(error: Any, loc: list[Any]) -> str:
    """What is wrong, in the experiment's words."""
    value = error.get("input")
    if error["type"] == "extra_forbidden":
        return "unknown field" + _suggestion(loc)
    if error["type"] == "missing":
        return "required field is missing"
    if error["type"] == "string_pattern_mismatch" and (
        error.get("ctx", {}).get("pattern") == SLUG_PATTERN
    ):
        fixed = re.sub(r"[^a-z0-9-]+", "-", str(value).lower()).strip("-")[:40].strip("-")
        return f"not a valid name: {SLUG_RULE}" + (f" (e.g. {fixed})" if fixed else "")
    return str(error["msg"]).removeprefix("Value error, ")


def _suggestion(loc: list[Any]) -> str:
    """'; did you mean epochs?' for the closest field of the model that holds loc[-1]."""
    import difflib

    model: Any = Experiment
    for part in loc[:-1]:
        model = _inner_model(model, part)
        if model is None:
            return ""
    names = [f.alias or name for name, f in model.model_fields.items()]
    close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]}?"
    return f"; {model.__name__} takes {', '.join(names)}"


def _inner_model(model: Any, part: Any) -> Any:
    """The pydantic model one step down `part` from `model` (a field, or a list's item)."""
    from typing import get_args, get_origin

    from pydantic import BaseModel

    if isinstance(part, int):
        return model
    fields = {f.alias or name: f for name, f in model.model_fields.items()}
    field = fields.get(part) or model.model_fields.get(part)
    if field is None:
        return None
    pending = [field.annotation]
    while pending:
        annotation = pending.pop()
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation
        if get_origin(annotation) is not None:
            pending.extend(get_args(annotation))
    return None


def resolve_source_paths(raw: dict[str, Any], folder: Path) -> None:
    """Relative folder:/csv:/npz: paths in the file's data section -> paths from `folder`."""
    data = raw.get("data")
    if not isinstance(data, dict):
        return

    def resolved(source: Any) -> Any:
        if not isinstance(source, str):
            return source
        scheme, sep, rest = source.partition(":")
        if scheme in PATH_SCHEMES and sep and rest and "://" not in rest:
            path = Path(rest).expanduser()
            if not path.is_absolute():
                return f"{scheme}:{(folder / path).resolve()}"
        return source

    if "source" in data:
        data["source"] = resolved(data["source"])
    extras = data.get("extra_train_sources")
    if isinstance(extras, list):
        data["extra_train_sources"] = [resolved(s) for s in extras]


def check_metrics(
    experiment: Experiment, not_here: tuple[str, ...] = (), listings: Any = None
) -> int | None:
    """Refuse a gate (or reference) metric the evaluations of this experiment cannot compute.

    Uses the class count when it is knowable before ingest (components/ingest/classes.py);
    returns that count, or None when only ingest can tell (compare then says so). `listings`:
    the data preflight's listings of the sources (components.ingest.listing.Listings).
    """
    from components.ingest.classes import known_class_count

    num_classes = known_class_count(experiment.data, not_here, listings)
    if num_classes is None:
        return None
    checked = [("gate.metric", experiment.gate.metric)]
    if experiment.reference is not None:
        checked.append(("reference.metric", experiment.reference.metric))
    for field, metric in checked:
        why = metric_unavailable(metric, num_classes)
        if why:
            raise ConfigError(f"{field}: {why} (data: {experiment.data.source})")
    return num_classes


def default_tracking_uri(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    """`tracking.mlflow` from MLFLOW_TRACKING_URI when the experiment (and --set) leave it unset."""
    uri = environ.get(MLFLOW_URI_ENV)
    tracking = raw.get("tracking")
    if not uri or (tracking is not None and not isinstance(tracking, dict)):
        return
    if tracking is None or tracking.get("mlflow") is None:
        raw["tracking"] = {**(tracking or {}), "mlflow": uri}


def load_experiment(experiment: str, overrides: list[str] | tuple[str, ...] = ()) -> Experiment:
    """Load a bundled experiment by name (or a YAML path), apply `--set` overrides, validate.

    In an experiment given as a file, relative `folder:`, `csv:` and `npz:` paths are read from
    the file's folder; a `--set` path is read from the working directory.
    """
    path = resolve_experiment_path(experiment)
    raw = parse_yaml(read_experiment_text(path), str(path))
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: the experiment must be a YAML mapping, got {type(raw).__name__}"
        )
    if path.parent.resolve() != EXPERIMENTS_DIR.resolve():
        resolve_source_paths(raw, path.parent.resolve())
    # Names are slugs of at most 40 characters; a long file name must not make an invalid one.
    default_name = re.sub(r"[^a-z0-9-]+", "-", path.stem.lower()).strip("-")[:40].strip("-")
    raw.setdefault("name", default_name or "experiment")
    paths = {override: apply_override(raw, override) for override in overrides}
    default_tracking_uri(raw, os.environ)
    try:
        return Experiment.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path), paths)) from None
    except RecursionError:
        raise ConfigError(
            f"{path}: nested too deeply; an experiment is a few levels deep"
        ) from None
