"""The experiment schema: one typed, validated config per run.

An experiment file states only what differs from the defaults below. It is validated once,
before anything is compiled or submitted; every error names the field, the bad value and
what is allowed. The step configs it is made of (data, models and their recipes) are the steps' own
vocabulary from `components/spec/`; this module adds the reference, gate, images, GCP, tracking
and registration sections, and takes the resources from `pipelines/config/resources.py`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from components.common.images import BASE_IMAGE
from components.ingest.sources import check_source
from components.spec import (
    DataConfig,
    MetricName,
    ModelSpec,
    OnFailure,
    Slug,
    Strict,
    min_input_side,
)
from components.spec.champion import ChampionPolicy
from components.spec.export import ExportConfig, export_formats_for
from pipelines.config.resources import Kfp, Resources, check_replicas

MAX_SEED = 2**32 - 1  # numpy's and TensorFlow's seeds are unsigned 32-bit


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


class ExperimentData(DataConfig):
    """The data section of an experiment: every source is one that a source kind
    (components/ingest/sources/) reads, checked before anything runs."""

    @field_validator("source", "extra_train_sources")
    @classmethod
    def _readable(cls, value: Any) -> Any:
        for source in value if isinstance(value, list) else [value]:
            check_source(source)
        return value


class Experiment(Strict):
    """The whole experiment: what to train on, which candidates, and where to run it."""

    name: Slug = "experiment"
    description: str = ""
    reference: Reference | None = None
    data: ExperimentData
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
        calibrated = [m.name for m in self.models if m.calibration != "none"]
        if calibrated and not self.data.splits.validation:
            raise ValueError(
                f"{', '.join(calibrated)} fit calibration's temperature on the validation "
                "split; set data.splits.validation above 0 (e.g. 0.1) or calibration: none"
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
