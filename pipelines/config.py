"""The experiment schema: one typed, validated config per run.

An experiment file states only what differs from the defaults below. It is validated once,
before anything is compiled or submitted; every error names the field, the bad value and
what is allowed. This module imports no KFP so the step modules can use the same types.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

EXPERIMENTS_DIR = Path(__file__).parent / "experiments"

SOURCE_SCHEMES = ("sklearn", "folder", "csv", "npz", "tfds", "hf")
SKLEARN_DATASETS = ("digits",)
KERAS_SCRATCH_ARCHITECTURES = ("small_cnn", "lenet5", "cifar_cnn", "cnn3")
KERAS_APPLICATIONS = (
    "resnet50v2",
    "inceptionv3",
    "efficientnetv2b0",
    "efficientnetv2b1",
    "efficientnetv2b2",
    "efficientnetv2b3",
    "efficientnetv2s",
    "efficientnetv2m",
    "efficientnetv2l",
    "convnexttiny",
    "convnextsmall",
    "convnextbase",
    "convnextlarge",
    "convnextxlarge",
    "densenet121",
    "densenet169",
    "mobilenetv3small",
    "mobilenetv3large",
)
KERAS_ARCHITECTURES = KERAS_SCRATCH_ARCHITECTURES + KERAS_APPLICATIONS
METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "top5_accuracy")
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
RESERVATION = re.compile(r"projects/[^/]+/zones/[^/]+/reservations/[^/]+")

Slug = Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")]
Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]


class ConfigError(ValueError):
    """A bad experiment file or override; the message says what to fix."""


class _Strict(BaseModel):
    # YAML (and so --set) reads 8, 2024 or 123456789012 as numbers; text fields take them as text
    # (cpu_limit: 8, a numeric project, folder class names 0-9).
    model_config = ConfigDict(extra="forbid", populate_by_name=True, coerce_numbers_to_str=True)


class Reference(_Strict):
    """What the reference system reached on the test set."""

    metric: Literal[METRICS] = "accuracy"  # type: ignore[valid-type]
    value: float = Field(ge=0.0, le=1.0)
    note: str | None = None


class Splits(_Strict):
    """Fractions carved out of the source's training data (test only when the source has none)."""

    validation: Fraction = 0.1
    test: Fraction = 0.1

    @model_validator(mode="after")
    def _leave_training_data(self) -> Splits:
        if self.validation + self.test >= 0.9:
            raise ValueError(
                f"validation + test = {self.validation + self.test:.2f} leaves almost nothing to "
                "train on; keep their sum below 0.9"
            )
        return self


class DataConfig(_Strict):
    """Where the images come from and how they are shaped."""

    source: str
    image_size: tuple[
        Annotated[int, Field(ge=8, le=1024)], Annotated[int, Field(ge=8, le=1024)]
    ] = (
        224,
        224,
    )
    channels: Literal[1, 3] = 3
    splits: Splits = Splits()
    min_images_per_class: int = Field(default=1, ge=1)
    min_image_side: int = Field(default=1, ge=1)
    classes: list[str] | None = Field(
        default=None, description="keep only these source classes (after label_map)"
    )
    label_map: dict[str, str] | None = Field(
        default=None, description="source class name -> target class name"
    )
    image_column: str = "image"
    label_column: str = "label"
    extra_train_sources: list[str] = Field(default_factory=list)
    shard_size: int = Field(default=2000, ge=10, description="images per TFRecord shard")

    @field_validator("source", "extra_train_sources")
    @classmethod
    def _known_scheme(cls, value: Any) -> Any:
        for source in value if isinstance(value, list) else [value]:
            check_source(source)
        return value

    @field_validator("classes")
    @classmethod
    def _distinct_classes(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if len(value) < 2:
                raise ValueError("a classifier needs at least 2 classes")
            if len(set(value)) != len(value):
                raise ValueError("class names must be distinct")
        return value

    @property
    def scheme(self) -> str:
        return self.source.split(":", 1)[0]


def check_source(source: str) -> None:
    scheme, sep, rest = source.partition(":")
    if not sep or scheme not in SOURCE_SCHEMES or not rest:
        raise ValueError(
            f"'{source}' is not a data source; use one of "
            + ", ".join(f"{s}:..." for s in SOURCE_SCHEMES)
            + " (e.g. sklearn:digits, folder:/data/pets, tfds:cifar10)"
        )
    if scheme == "sklearn" and rest not in SKLEARN_DATASETS:
        raise ValueError(
            f"sklearn:{rest} is not embedded; available: {', '.join(SKLEARN_DATASETS)}"
        )


class Optimizer(_Strict):
    name: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    learning_rate: float = Field(default=1e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_epochs: int = Field(
        default=0, ge=0, description="linear warm-up before the cosine decay"
    )


class Augment(_Strict):
    flip: Literal["none", "horizontal", "vertical", "horizontal_and_vertical"] = "none"
    rotation: Fraction = 0.0
    zoom: Fraction = 0.0
    translation: Fraction = 0.0
    contrast: Fraction = 0.0


class FineTune(_Strict):
    """Second phase of transfer learning: unfreeze the top layers at a lower learning rate."""

    epochs: int = Field(default=0, ge=0)
    unfreeze_layers: int = Field(default=0, ge=0, description="0 unfreezes the whole backbone")
    learning_rate: float = Field(default=1e-5, gt=0.0)


class ModelSpec(_Strict):
    """One candidate model and its training recipe."""

    name: Slug
    framework: Literal["keras", "transformers"] = "keras"
    architecture: str | None = None
    weights: str = Field(default="none", description="keras: imagenet | none | path")
    checkpoint: str | None = Field(default=None, description="transformers: Hub id or folder")
    params: dict[str, Any] = Field(
        default_factory=dict, description="architecture knobs, e.g. filters, dropout, l2"
    )
    epochs: int = Field(default=10, ge=1, le=1000)
    batch_size: int = Field(default=32, ge=1, le=65536)
    optimizer: Optimizer = Optimizer()
    augment: Augment = Augment()
    label_smoothing: Fraction = 0.0
    early_stopping_patience: int | None = Field(default=None, ge=1)
    reduce_lr_patience: int | None = Field(
        default=None, ge=1, description="ReduceLROnPlateau patience (constant schedule only)"
    )
    mixed_precision: Literal["auto", "off"] = Field(
        default="auto", description="auto: float16 on GPU, bfloat16 on TPU, float32 on CPU"
    )
    jit_compile: bool = Field(default=False, description="compile the training step with XLA")
    fine_tune: FineTune = FineTune()
    gradient_accumulation_steps: int = Field(
        default=1, ge=1, le=1024, description="transformers: micro-batches per optimizer step"
    )
    layer_decay: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="transformers: layer-wise learning-rate decay (each block down from the "
        "head gets this factor once more)",
    )

    @model_validator(mode="after")
    def _framework_fields(self) -> ModelSpec:
        if self.framework == "keras":
            if self.architecture is None:
                raise ValueError(
                    f"model '{self.name}': keras models need 'architecture' (one of "
                    f"{', '.join(KERAS_ARCHITECTURES)})"
                )
            if self.architecture not in KERAS_ARCHITECTURES:
                raise ValueError(
                    f"model '{self.name}': architecture '{self.architecture}' is unknown; "
                    f"use one of {', '.join(KERAS_ARCHITECTURES)}"
                )
            if self.checkpoint is not None:
                raise ValueError(
                    f"model '{self.name}': 'checkpoint' is for framework: transformers; "
                    "keras models take 'architecture' and 'weights'"
                )
            if self.reduce_lr_patience and self.optimizer.schedule != "constant":
                raise ValueError(
                    f"model '{self.name}': reduce_lr_patience needs optimizer.schedule: constant "
                    "(a cosine schedule already sets the learning rate every step)"
                )
            if self.architecture in KERAS_SCRATCH_ARCHITECTURES and self.weights != "none":
                raise ValueError(
                    f"model '{self.name}': {self.architecture} trains from scratch; "
                    "set weights: none (pretrained weights exist only for keras applications)"
                )
            if self.gradient_accumulation_steps != 1 or self.layer_decay is not None:
                raise ValueError(
                    f"model '{self.name}': gradient_accumulation_steps and layer_decay are for "
                    "framework: transformers; remove them or raise batch_size for keras models"
                )
        else:
            if not self.checkpoint:
                raise ValueError(
                    f"model '{self.name}': transformers models need 'checkpoint' "
                    "(a Hub id such as google/vit-base-patch16-224 or a local folder)"
                )
            if self.architecture is not None:
                raise ValueError(
                    f"model '{self.name}': 'architecture' is for framework: keras; "
                    "transformers models take 'checkpoint'"
                )
            keras_only = [
                name
                for name, unset in (
                    ("weights", self.weights == "none"),
                    ("fine_tune", not self.fine_tune.epochs),
                    ("reduce_lr_patience", self.reduce_lr_patience is None),
                    ("jit_compile", not self.jit_compile),
                )
                if not unset
            ]
            if keras_only:
                raise ValueError(
                    f"model '{self.name}': keras-only settings given ({', '.join(keras_only)}); "
                    "remove them: transformers models fine-tune the whole checkpoint in one "
                    "phase (use optimizer.schedule: cosine with warmup_epochs, and layer_decay)"
                )
        return self


class Gate(_Strict):
    """The best candidate must reach this before it is registered."""

    metric: Literal[METRICS] = "accuracy"  # type: ignore[valid-type]
    min: float = Field(default=0.0, ge=0.0, le=1.0)


class VertexResources(_Strict):
    machine_type: str = "n1-standard-8"
    accelerator: str | None = None
    count: int = Field(default=1, ge=1, le=16)
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
        if not re.fullmatch(r"\d+s", value):
            raise ValueError("write the duration in seconds with an 's', e.g. 3600s (0s: no limit)")
        return value

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


class Toleration(_Strict):
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


class KfpResources(_Strict):
    """Resources of the training step on a KFP cluster (Kubernetes names)."""

    gpus: int = Field(default=0, ge=0, le=16, description="nvidia.com/gpu per training pod")
    cpu_limit: str | None = None
    memory_limit: str | None = None
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="node labels the training pod must run on"
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="taints the training pod tolerates (e.g. GPU nodes)"
    )


KFP_DEFAULT_PIPELINE_ROOT = "minio://mlpipeline/v2/artifacts"
KFP_PIPELINE_ROOT_SCHEMES = ("minio", "s3", "gs")
KIND_REGISTRY_PVC = "imgclf-registry"  # created by infra/kind (storage.yaml)
K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class Kfp(_Strict):
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


class Resources(_Strict):
    vertex: VertexResources = VertexResources()
    kfp: KfpResources = KfpResources()


class Images(_Strict):
    """Container images of the steps (each has this project installed)."""

    cpu: str = "image-classification-cpu:latest"
    gpu: str = "image-classification-gpu:latest"
    tpu: str = "image-classification-tpu:latest"
    transformers: str = "image-classification-transformers:latest"


class Gcp(_Strict):
    project: str | None = None
    region: str = "us-central1"
    bucket: str | None = Field(default=None, pattern=r"^gs://[a-z0-9][a-z0-9._-]{1,220}(/.*)?$")
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


class Register(_Strict):
    name: Slug
    aliases: list[str] = Field(default_factory=list)
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
        description="Vertex: serving container of transformers models, which serves the Model "
        "folder (model_card.json plus hf/) on AIP_HTTP_PORT (default images.transformers)",
    )
    keras_serving_image: str | None = Field(
        default=None,
        description="Vertex: serving container of keras models' SavedModel (default Vertex's "
        "prebuilt TensorFlow CPU container of the region)",
    )


class Experiment(_Strict):
    """The whole experiment: what to train on, which candidates, and where to run it."""

    name: Slug = "experiment"
    description: str = ""
    reference: Reference | None = None
    data: DataConfig
    models: list[ModelSpec] = Field(min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    gate: Gate = Gate()
    resources: Resources = Resources()
    images: Images = Images()
    gcp: Gcp = Gcp()
    kfp: Kfp = Kfp()
    registration: Register | None = Field(default=None, alias="register")

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
        if self.registration is None:
            self.registration = Register(name=f"{self.name}-classifier"[:40].strip("-"))
        if self.resources.vertex.is_tpu:
            hf = [m.name for m in self.models if m.framework == "transformers"]
            if hf:
                raise ValueError(
                    f"TPU training is supported for keras models only; {', '.join(hf)} use "
                    "transformers: train them on a GPU (resources.vertex.accelerator: NVIDIA_L4) "
                    "or use a keras architecture"
                )
        return self

    def candidates(self) -> list[dict[str, Any]]:
        """Every model x seed, as the loop items of the pipeline (keys must not clash with
        PipelineChannel attributes such as `name`)."""
        return [
            {"model_spec": m.model_dump(mode="json", exclude_none=True), "seed": seed}
            for m in self.models
            for seed in self.seeds
        ]

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
        names = ", ".join(list_experiments())
        raise ConfigError(f"unknown experiment '{experiment}'; use a YAML path or one of: {names}")
    return bundled


def parse_override(override: str) -> tuple[list[str | int], Any]:
    """`a.b.0.c=value` -> (['a', 'b', 0, 'c'], parsed YAML scalar)."""
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {override!r}: expected KEY=VALUE, e.g. --set models.0.epochs=1")
    parts: list[str | int] = []
    for part in key.strip().split("."):
        if not part:
            raise ConfigError(f"--set {override!r}: empty component in key '{key}'")
        parts.append(int(part) if re.fullmatch(r"\d+", part) else part)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {override!r}: value is not valid YAML ({exc})") from None
    return parts, value


def apply_override(raw: dict[str, Any], override: str) -> None:
    path, value = parse_override(override)
    node: Any = raw
    for depth, part in enumerate(path[:-1]):
        here = ".".join(str(p) for p in path[: depth + 1])
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                size = len(node) if isinstance(node, list) else 0
                raise ConfigError(
                    f"--set {override!r}: '{here}' is out of range (the list has {size} items)"
                )
            node = node[part]
        else:
            if not isinstance(node, dict):
                raise ConfigError(f"--set {override!r}: '{here}' is not a mapping")
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last > len(node):
            raise ConfigError(f"--set {override!r}: index {last} is out of range")
        if last == len(node):
            node.append(value)
        else:
            node[last] = value
    else:
        if not isinstance(node, dict):
            raise ConfigError(f"--set {override!r}: cannot set '{last}' on a non-mapping")
        node[last] = value


def format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: {exc.error_count()} problem(s) in the experiment"]
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field; check its spelling against the README's experiment schema"
        elif error["type"] == "missing":
            message = "required field is missing"
        value = error.get("input")
        shown = (
            "" if error["type"] in ("missing",) or isinstance(value, dict) else f" (got {value!r})"
        )
        lines.append(f"  {field}: {message}{shown}")
    return "\n".join(lines)


def load_experiment(experiment: str, overrides: list[str] | tuple[str, ...] = ()) -> Experiment:
    """Load a bundled experiment by name (or a YAML path), apply `--set` overrides, validate."""
    path = resolve_experiment_path(experiment)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: the experiment must be a YAML mapping, got {type(raw).__name__}"
        )
    # Names are slugs of at most 40 characters; a long file name must not make an invalid one.
    default_name = re.sub(r"[^a-z0-9-]+", "-", path.stem.lower()).strip("-")[:40].strip("-")
    raw.setdefault("name", default_name or "experiment")
    for override in overrides:
        apply_override(raw, override)
    try:
        return Experiment.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from None
