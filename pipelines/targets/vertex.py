"""The `vertex` target: Vertex AI Pipelines.

Compile: every step runs in its image from the experiment (a registry path, by tag or digest).
Training is a plain pipeline task (CPU, memory, GPUs through `set_accelerator_type`) unless it
needs what only a Vertex AI custom job expresses: a TPU slice (with its topology), spot or
flex-start scheduling, a reservation, or a TensorBoard. Then it goes through
`create_custom_training_job_from_component`, whose worker pool spec gets the `tpu_topology` that
helper has no argument for. Retries apply to the training task either way, so a preempted spot or
TPU step starts again and resumes from its checkpoints.

After the gate the best model is copied into the folder registry in the bucket (as on every
target) and uploaded to the Vertex AI Model Registry (GCPC `ModelUploadOp`), as a new version of
the model of the same name when there is one; with `register.deploy` it is deployed to an
endpoint that is created or reused. GCPC's launchers run in our own images (they install the
`vertex` extra), so a run pulls only from the experiment's registry.

Submit: a preflight that needs no network (project, region, bucket, service account, registry
images, accelerator for the region, ...; exit code 2 and nothing submitted otherwise), then
`aiplatform.PipelineJob` with labels, parameters, caching, service account, network, encryption
key and Vertex AI Experiments; `--wait` streams task states until the run ends.
"""

import contextlib
import functools
import logging
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from kfp import dsl

from components.common.images import BASE_IMAGE
from pipelines.targets.base import (
    RETRY_BACKOFF,
    RETRY_BACKOFF_FACTOR,
    PreflightError,
    SubmitError,
    Target,
)

CONSOLE = "https://console.cloud.google.com/vertex-ai/locations/{region}/pipelines/runs/{run}?project={project}"
API_ROOT = "https://{region}-aiplatform.googleapis.com/v1/"

# Resolved by Vertex AI Pipelines when the task runs (google_cloud_pipeline_components'
# _placeholders): the PipelineJob's service account, network and CMEK key.
SERVICE_ACCOUNT_PLACEHOLDER = "{{$.pipeline_service_account}}"
NETWORK_PLACEHOLDER = "{{$.pipeline_network}}"
ENCRYPTION_KEY_PLACEHOLDER = "{{$.pipeline_encryption_key_name}}"

# Where the keras trainer exports the SavedModel that a TensorFlow serving container loads.
KERAS_SAVED_MODEL = "keras/saved_model"
# Vertex's newest prebuilt TensorFlow prediction container; {multiregion} is us, europe or asia.
KERAS_SERVING_IMAGE = "{multiregion}-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"
RESERVATION_KEY = "compute.googleapis.com/reservation-name"
MODEL_LABEL = "imgclf_model"  # label of the models and endpoints this pipeline registers
# Vertex AI Model Registry version aliases.
ALIAS = re.compile(r"[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]")
SERVICE_ACCOUNT = re.compile(r"[^@\s]+@[^@\s]+\.gserviceaccount\.com")
NETWORK = re.compile(r"projects/\d+/global/networks/[^/]+")
KMS_KEY = re.compile(r"projects/[^/]+/locations/(?P<region>[^/]+)/keyRings/[^/]+/cryptoKeys/[^/]+")
# A registry path names its registry host: REGION-docker.pkg.dev/..., gcr.io/..., host:5000/...
REGISTRY_HOST = re.compile(r"^(localhost|[a-z0-9-]+(\.[a-z0-9-]+)+|[a-z0-9.-]+:\d+)/")

_T4, _V100, _P100 = "NVIDIA_TESLA_T4", "NVIDIA_TESLA_V100", "NVIDIA_TESLA_P100"
_A100, _A100_80, _L4 = "NVIDIA_TESLA_A100", "NVIDIA_A100_80GB", "NVIDIA_L4"
_H100, _H100_MEGA, _H200 = "NVIDIA_H100_80GB", "NVIDIA_H100_MEGA_80GB", "NVIDIA_H200_141GB"
_V5E, _V5P, _V6E = "TPU_V5_LITEPOD", "TPU_V5P", "TPU_V6E"
# Accelerators Vertex AI custom training offers per region: a snapshot of the "Locations" page of
# the Vertex AI docs. When Google adds one to a region, add it here. The preflight fails on a
# listed region without the experiment's accelerator, and only warns on a region not listed.
ACCELERATORS_BY_REGION: dict[str, frozenset[str]] = {
    "us-central1": frozenset(
        {_T4, _V100, _P100, _A100, _A100_80, _L4, _H100, _H100_MEGA, _H200, _V5E, _V5P, _V6E}
    ),
    "us-east1": frozenset({_T4, _V100, _P100, _A100, _L4, _H100, _V6E}),
    "us-east4": frozenset({_T4, _A100, _A100_80, _L4, _H100, _H100_MEGA, _H200}),
    "us-east5": frozenset({_A100_80, _H100, _V5E, _V5P, _V6E}),
    "us-west1": frozenset({_T4, _V100, _P100, _A100, _L4, _H100, _V5E, _V6E}),
    "us-west4": frozenset({_T4, _A100, _L4, _H100, _V5E}),
    "europe-west1": frozenset({_T4, _P100, _L4}),
    "europe-west4": frozenset(
        {_T4, _V100, _P100, _A100, _A100_80, _L4, _H100, _H100_MEGA, _V5E, _V5P, _V6E}
    ),
    "asia-northeast1": frozenset({_T4, _A100, _L4, _H100, _V6E}),
    "asia-southeast1": frozenset({_T4, _A100, _A100_80, _L4, _H100, _V5E, _V6E}),
}
# The machine types that carry each accelerator (custom jobs name a machine type).
MACHINE_FAMILIES: dict[str, tuple[str, ...]] = {
    _T4: ("n1-",),
    _V100: ("n1-",),
    _P100: ("n1-",),
    _A100: ("a2-highgpu-", "a2-megagpu-"),
    _A100_80: ("a2-ultragpu-",),
    _L4: ("g2-",),
    _H100: ("a3-highgpu-",),
    _H100_MEGA: ("a3-megagpu-",),
    _H200: ("a3-ultragpu-",),
    _V5E: ("ct5lp-hightpu-",),
    _V5P: ("ct5p-hightpu-",),
    _V6E: ("ct6e-standard-",),
}
G2_GPUS = {4: 1, 8: 1, 12: 1, 16: 1, 32: 1, 24: 2, 48: 4, 96: 8}  # g2-standard-N -> L4s

# What each step's code imports, as extras of pyproject.toml. An image installs the extras of
# every step it runs (IMAGE_STEPS; `configure` below assigns the images by the same rule); GCPC's
# launchers and the registration lookup ("vertex") run in every image.
STEP_EXTRAS: dict[str, frozenset[str]] = {
    "ingest": frozenset({"tf", "data"}),  # TFRecords; tfds: and hf: sources
    "train:keras": frozenset({"tf"}),
    "train:transformers": frozenset({"tf", "hf"}),  # reads the TFRecords, trains with torch
    "evaluate:keras": frozenset({"tf"}),
    "evaluate:transformers": frozenset({"tf", "hf"}),
    "compare": frozenset(),
    "gate": frozenset(),
    "register": frozenset(),
    "vertex": frozenset({"vertex"}),
}
IMAGE_STEPS: dict[str, tuple[str, ...]] = {
    "cpu": (
        "ingest",
        "train:keras",  # without an accelerator
        "evaluate:keras",
        "evaluate:transformers",
        "compare",
        "gate",
        "register",
        "vertex",
    ),
    "gpu": ("train:keras", "vertex"),
    "tpu": ("train:keras", "vertex"),
    "transformers": ("train:transformers", "vertex"),
}
# The same imports from an accelerator build: an image may install one of these for the extra.
EXTRA_BUILDS: dict[str, tuple[str, ...]] = {"tf": ("tf", "tf-gpu", "tf-tpu")}


def image_extras(image: str) -> frozenset[str]:
    """The extras the steps that run in `image` (cpu, gpu, tpu, transformers) import."""
    return frozenset().union(*(STEP_EXTRAS[step] for step in IMAGE_STEPS[image]))


# --- small helpers (plain Python) --------------------------------------------------------------


def image_pin(image: str) -> tuple[str, str]:
    """('digest', 'sha256:...'), ('tag', 'v1') or ('tag', 'latest') for an image reference."""
    if "@" in image:
        return "digest", image.split("@", 1)[1]
    last = image.rsplit("/", 1)[-1]
    return "tag", last.split(":", 1)[1] if ":" in last else "latest"


def multiregion(region: str) -> str:
    """The Artifact Registry multi-region of Vertex's prebuilt containers for `region`."""
    if region.startswith("europe-"):
        return "europe"
    if region.startswith(("asia-", "australia-", "me-")):
        return "asia"
    return "us"


def tpu_chips(topology: str) -> int:
    return functools.reduce(lambda a, b: a * b, (int(n) for n in topology.split("x")), 1)


def git_commit(folder: Path) -> tuple[str | None, bool]:
    """(HEAD commit, whether tracked files have uncommitted changes) of the repository holding
    `folder`; (None, False) outside a repository or without git."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=folder, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit or not re.fullmatch(r"[0-9a-f]{40}", commit):
        return None, False
    return commit, bool(git("status", "--porcelain", "--untracked-files=no"))


def plan_registration(
    summary: dict[str, Any],
    record: dict[str, Any],
    model_name: str,
    keras_serving_image: str,
    transformers_serving_image: str,
    endpoint_name: str,
    project: str,
    location: str,
) -> dict[str, Any]:
    """What the Model Registry upload needs, found when the pipeline runs.

    The serving artifact is the copy in the folder registry (`record`, the register step's
    result, under /gcs/BUCKET/...), which outlives the run's artifacts; the serving container
    is the one of the best model's framework. The model and endpoint already registered under
    these names come as resource name and API URI, or "" when there is none.
    """
    from google.cloud import aiplatform

    best = summary["best"]
    path = str(record.get("path") or "")
    if path.startswith("/gcs/"):
        model_uri = "gs://" + path.removeprefix("/gcs/").rstrip("/") + "/model"
    else:
        model_uri = str(best["model_uri"]).rstrip("/")
    if (record.get("framework") or best.get("framework") or "keras") == "keras":
        serving_uri, serving_image = f"{model_uri}/{KERAS_SAVED_MODEL}", keras_serving_image
    else:
        serving_uri, serving_image = model_uri, transformers_serving_image
    api = API_ROOT.format(region=location)
    models = aiplatform.Model.list(
        filter=f'display_name="{model_name}"',
        order_by="create_time",
        project=project,
        location=location,
    )
    parent = models[0].resource_name if models else ""
    endpoint = ""
    if endpoint_name:
        endpoints = aiplatform.Endpoint.list(
            filter=f'display_name="{endpoint_name}"',
            order_by="create_time",
            project=project,
            location=location,
        )
        endpoint = endpoints[0].resource_name if endpoints else ""
    version = str(record.get("version") or "")
    labels = {MODEL_LABEL: model_name}
    if version:
        labels["registry_version"] = version.lower()
    return {
        "serving_uri": serving_uri,
        "serving_image": serving_image,
        "description": (
            f"{version + ': ' if version else ''}{best['name']} seed {int(best['seed'])}, "
            f"{summary['metric']} {best['value']:.4f}"
        ),
        "labels": labels,
        "parent_model": parent,
        "parent_model_uri": api + parent if parent else "",
        "endpoint": endpoint,
        "endpoint_uri": api + endpoint if endpoint else "",
    }


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def vertex_registration(
    summary: dict,
    record: dict,
    model_name: str,
    keras_serving_image: str,
    transformers_serving_image: str,
    endpoint_name: str,
    location: str,
    # A literal: the function's source runs in the step. Vertex resolves it to the run's project.
    project: str = "{{$.pipeline_google_cloud_project_id}}",
) -> NamedTuple(  # type: ignore[valid-type]
    "VertexRegistration",
    serving_uri=str,
    serving_image=str,
    description=str,
    labels=dict,
    parent_model=str,
    parent_model_uri=str,
    endpoint=str,
    endpoint_uri=str,
):
    """Plans the upload of the best model to the Vertex AI Model Registry.

    Args:
        summary: The compare step's summary (best run: framework, model URI, metric value).
        record: The register step's record (version, framework, folder in the bucket).
        model_name: Display name of the registered model.
        keras_serving_image: Serving container of keras models (loads the SavedModel).
        transformers_serving_image: Serving container of transformers models (loads the folder).
        endpoint_name: Display name of the endpoint to deploy to; empty when not deploying.
        location: Region of the Model Registry and the endpoint.
        project: Project of the Model Registry (default: the pipeline's).

    Returns:
        serving_uri: What the serving container loads, in the folder registry: the SavedModel
            or the Model folder.
        serving_image: The serving container for the best model's framework.
        description: The version's description (best run and its metric).
        labels: Labels of the uploaded model.
        parent_model: Resource name of the model already registered under model_name, or "".
        parent_model_uri: Its API URI, or "".
        endpoint: Resource name of the endpoint named endpoint_name, or "".
        endpoint_uri: Its API URI, or "".
    """
    import json
    from collections import namedtuple

    from pipelines.targets.vertex import plan_registration

    plan = plan_registration(
        summary,
        record,
        model_name,
        keras_serving_image,
        transformers_serving_image,
        endpoint_name,
        project,
        location,
    )
    print(json.dumps(plan, indent=2))
    VertexRegistration = namedtuple(
        "VertexRegistration",
        [
            "serving_uri",
            "serving_image",
            "description",
            "labels",
            "parent_model",
            "parent_model_uri",
            "endpoint",
            "endpoint_uri",
        ],
    )
    return VertexRegistration(**plan)


def _gcpc() -> Any:
    """google_cloud_pipeline_components, or a PreflightError that says how to install it."""
    try:
        import google_cloud_pipeline_components as gcpc
        from google_cloud_pipeline_components.types import artifact_types  # noqa: F401
        from google_cloud_pipeline_components.v1 import custom_job, endpoint, model  # noqa: F401
    except ImportError as exc:
        raise PreflightError(
            f"--target vertex needs the vertex extra ({exc.name} is missing): "
            "pip install -e '.[vertex]'"
        ) from None
    return gcpc


@functools.lru_cache(maxsize=32)
def custom_job_component(
    component: Any,
    *,
    image: str,
    tpu_topology: str | None,
    reservation: str | None,
    experiment: str,
    **settings: Any,
) -> Any:
    """`component` as a Vertex AI custom job (GCPC `create_custom_training_job_from_component`)
    whose one worker runs `image`, as the pipeline's service account; the worker pool spec gets
    the TPU topology GCPC has no argument for. `settings` are that helper's arguments."""
    _gcpc()
    from google_cloud_pipeline_components.v1.custom_job import (
        create_custom_training_job_from_component,
    )

    affinity: dict[str, Any] = {}
    if reservation == "any":
        affinity = {"reservation_affinity_type": "ANY_RESERVATION"}
    elif reservation:
        affinity = {
            "reservation_affinity_type": "SPECIFIC_RESERVATION",
            "reservation_affinity_key": RESERVATION_KEY,
            "reservation_affinity_values": [reservation],
        }
    job = create_custom_training_job_from_component(
        component,
        service_account=SERVICE_ACCOUNT_PLACEHOLDER,
        labels={"experiment": experiment},
        **settings,
        **affinity,
    )
    # The compiler writes the component's input defaults into the package.
    for pool in job.component_spec.inputs["worker_pool_specs"].default:
        # GCPC copies the component's base image; the step's image comes from the experiment.
        pool["container_spec"]["image_uri"] = image
        if tpu_topology:
            pool["machine_spec"]["tpu_topology"] = tpu_topology
    return job


# --- the target --------------------------------------------------------------------------------


class VertexTarget(Target):
    name = "vertex"
    poll_seconds = 30.0  # --wait: time between two looks at the run
    source_dir = Path(__file__).resolve().parents[2]  # where `git rev-parse` reads the commit

    def registry_root(self) -> str:
        # Vertex mounts Cloud Storage at /gcs/<bucket> in every step (Cloud Storage FUSE).
        bucket = self.experiment.gcp.bucket or "gs://bucket-not-configured"
        return "/gcs/" + bucket.removeprefix("gs://").rstrip("/") + "/registry"

    def pipeline_root(self) -> str | None:
        bucket = self.experiment.gcp.bucket
        return f"{bucket.rstrip('/')}/pipeline-root/{self.experiment.name}" if bucket else None

    # --- compile -------------------------------------------------------------------------

    def uses_custom_job(self) -> bool:
        """Whether training needs a Vertex AI custom job rather than a plain pipeline task."""
        resources = self.experiment.resources.vertex
        return bool(
            resources.is_tpu
            or resources.spot
            or resources.flex_start
            or resources.reservation
            or self.experiment.gcp.tensorboard
        )

    def scheduling(self) -> str:
        resources = self.experiment.resources.vertex
        return "SPOT" if resources.spot else "FLEX_START" if resources.flex_start else "STANDARD"

    def accelerator_count(self) -> int:
        resources = self.experiment.resources.vertex
        if resources.is_tpu and resources.tpu_topology:
            return tpu_chips(resources.tpu_topology)
        return resources.count

    def component_for(self, step: str, component: Any, framework: str | None = None) -> Any:
        if step != "train" or not self.uses_custom_job():
            return component
        wrapped = self._custom_job(component, framework or "keras")
        tensorboard = self.experiment.gcp.tensorboard
        bucket = self.experiment.gcp.bucket
        if tensorboard and bucket:
            # A TensorBoard needs the job's output directory; one per task keeps each
            # candidate's AIP_CHECKPOINT_DIR (beneath it) its own.
            return functools.partial(
                wrapped,
                base_output_directory=f"{bucket.rstrip('/')}/custom-jobs/"
                f"{dsl.PIPELINE_JOB_ID_PLACEHOLDER}/{dsl.PIPELINE_TASK_ID_PLACEHOLDER}",
            )
        return wrapped

    def _custom_job(self, component: Any, framework: str) -> Any:
        resources = self.experiment.resources.vertex
        gcp = self.experiment.gcp
        return custom_job_component(
            component,
            image=self.train_image(framework),
            tpu_topology=resources.tpu_topology,
            display_name=f"imgclf-{self.experiment.name}-train-{framework}",
            machine_type=resources.machine_type,
            accelerator_type=resources.accelerator or "",
            accelerator_count=self.accelerator_count(),
            strategy=self.scheduling(),
            max_wait_duration=resources.max_wait_duration,
            reservation=resources.reservation,
            network=NETWORK_PLACEHOLDER if gcp.network else "",
            encryption_spec_key_name=ENCRYPTION_KEY_PLACEHOLDER if gcp.encryption_key else "",
            tensorboard=gcp.tensorboard or "",
            experiment=self.experiment.name,
        )

    def configure(self, task: Any, step: str, framework: str | None = None) -> None:
        images = self.experiment.images
        task.set_container_image(
            self.train_image(framework or "keras") if step == "train" else images.cpu
        )
        if step != "train":
            return
        resources = self.experiment.resources.vertex
        if not self.uses_custom_job():
            if resources.cpu_limit:
                task.set_cpu_limit(resources.cpu_limit)
            if resources.memory_limit:
                task.set_memory_limit(resources.memory_limit)
            if resources.accelerator:
                task.set_accelerator_type(resources.accelerator).set_accelerator_limit(
                    resources.count
                )
        # else: the task only launches the custom job and waits; its machine is in the job.
        if resources.retries:
            task.set_retry(
                num_retries=resources.retries,
                backoff_duration=RETRY_BACKOFF,
                backoff_factor=RETRY_BACKOFF_FACTOR,
            )

    def add_register(
        self,
        *,
        best_model_uri: Any,
        summary: Any,
        registry_root: Any,
        name: Any,
        aliases: Any,
    ) -> Any:
        """The folder registry in the bucket, then the Vertex AI Model Registry (and endpoint)."""
        register_task = super().add_register(
            best_model_uri=best_model_uri,
            summary=summary,
            registry_root=registry_root,
            name=name,
            aliases=aliases,
        )
        _gcpc()
        from google_cloud_pipeline_components.types import artifact_types
        from google_cloud_pipeline_components.v1.endpoint import EndpointCreateOp, ModelDeployOp
        from google_cloud_pipeline_components.v1.model import ModelUploadOp

        registration = self.experiment.registration
        assert registration is not None
        region = self.experiment.gcp.region
        key = self.experiment.gcp.encryption_key or ""
        plan = vertex_registration(
            summary=summary,
            record=register_task.output,
            model_name=name,
            keras_serving_image=self.keras_serving_image(),
            transformers_serving_image=self.transformers_serving_image(),
            endpoint_name=self.endpoint_name() if registration.deploy else "",
            location=region,
        ).set_display_name("find registered model")
        self.configure(plan, "register")
        plan.set_caching_options(False)  # it reads the registry as it is now
        serving_model = dsl.importer(
            artifact_uri=plan.outputs["serving_uri"],
            artifact_class=artifact_types.UnmanagedContainerModel,
            metadata={"containerSpec": {"imageUri": plan.outputs["serving_image"]}},
        ).set_display_name("serving model")
        upload = functools.partial(
            ModelUploadOp,
            display_name=name,
            description=plan.outputs["description"],
            unmanaged_container_model=serving_model.output,
            version_aliases=aliases,
            labels=plan.outputs["labels"],
            encryption_spec_key_name=key,
            location=region,
        )
        with dsl.If(plan.outputs["parent_model"] != "", name="model-registered"):
            parent = dsl.importer(
                artifact_uri=plan.outputs["parent_model_uri"],
                artifact_class=artifact_types.VertexModel,
                metadata={"resourceName": plan.outputs["parent_model"]},
            ).set_display_name("registered model")
            new_version = upload(parent_model=parent.output).set_display_name("upload version")
            self.configure(new_version, "register")
        with dsl.Else(name="model-new"):
            new_model = upload().set_display_name("upload model")
            self.configure(new_model, "register")
        if not registration.deploy:
            return register_task
        uploaded = dsl.OneOf(new_version.outputs["model"], new_model.outputs["model"])
        with dsl.If(plan.outputs["endpoint"] != "", name="endpoint-exists"):
            existing = dsl.importer(
                artifact_uri=plan.outputs["endpoint_uri"],
                artifact_class=artifact_types.VertexEndpoint,
                metadata={"resourceName": plan.outputs["endpoint"]},
            ).set_display_name("existing endpoint")
        with dsl.Else(name="endpoint-new"):
            created = EndpointCreateOp(
                display_name=self.endpoint_name(),
                labels={MODEL_LABEL: registration.name},
                encryption_spec_key_name=key,
                location=region,
            ).set_display_name("create endpoint")
            self.configure(created, "register")
            created.set_caching_options(False)
        deploy = ModelDeployOp(
            model=uploaded,
            endpoint=dsl.OneOf(existing.output, created.outputs["endpoint"]),
            deployed_model_display_name=registration.name,
            traffic_split={"0": 100},
            dedicated_resources_machine_type=registration.serving_machine_type,
            dedicated_resources_min_replica_count=1,
            dedicated_resources_max_replica_count=1,
        ).set_display_name("deploy")
        self.configure(deploy, "register")
        deploy.set_caching_options(False)
        return register_task

    def keras_serving_image(self) -> str:
        registration = self.experiment.registration
        assert registration is not None
        return registration.keras_serving_image or KERAS_SERVING_IMAGE.format(
            multiregion=multiregion(self.experiment.gcp.region)
        )

    def transformers_serving_image(self) -> str:
        registration = self.experiment.registration
        assert registration is not None
        return registration.serving_image or self.experiment.images.transformers

    def endpoint_name(self) -> str:
        registration = self.experiment.registration
        assert registration is not None
        return registration.endpoint or f"{registration.name}-endpoint"

    # --- preflight -----------------------------------------------------------------------

    def used_images(self) -> dict[str, str]:
        """Config field -> image, for every image this experiment's pipeline runs in."""
        used = super().used_images()
        registration = self.experiment.registration
        if registration and registration.serving_image:
            used["register.serving_image"] = registration.serving_image
        if registration and registration.keras_serving_image:
            used["register.keras_serving_image"] = registration.keras_serving_image
        return used

    def preflight(self) -> list[str]:
        """Check, without the network, that the run can be submitted. Returns warnings; raises
        PreflightError naming every problem and how to fix it."""
        experiment = self.experiment
        gcp = experiment.gcp
        registration = experiment.registration
        assert registration is not None
        problems: list[str] = []
        warnings: list[str] = []
        missing = [
            f"gcp.{name}"
            for name in ("project", "region", "bucket", "service_account")
            if not getattr(gcp, name)
        ]
        if missing:
            problems.append(
                f"--target vertex needs {', '.join(missing)}; set them in the experiment or with "
                f"--set (e.g. --set gcp.project=my-project --set gcp.bucket=gs://my-bucket)"
            )
        defaults = type(experiment.images)().model_dump()
        for field, image in self.used_images().items():
            if image in defaults.values():
                problems.append(
                    f"{field} is {image}, the local default image; build and push the images "
                    f"(make images) and set {field}=REGION-docker.pkg.dev/PROJECT/REPOSITORY/"
                    f"{field.rsplit('.', 1)[-1]}:TAG"
                )
            elif not REGISTRY_HOST.match(image):
                problems.append(
                    f"{field} is {image}, which names no registry; Vertex AI pulls images by "
                    f"registry path, e.g. REGION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE:TAG"
                )
            elif image_pin(image) == ("tag", "latest") and field.startswith("images."):
                warnings.append(
                    f"{field} is {image}: a moving tag; pin the git commit tag or a digest so "
                    "the run is reproducible"
                )
        if gcp.service_account and not SERVICE_ACCOUNT.fullmatch(gcp.service_account):
            problems.append(
                f"gcp.service_account is {gcp.service_account!r}; use the service account's "
                "email, e.g. imgclf-pipelines@PROJECT.iam.gserviceaccount.com "
                "(terraform output service_account)"
            )
        if gcp.network and not NETWORK.fullmatch(gcp.network):
            problems.append(
                f"gcp.network is {gcp.network!r}; use projects/PROJECT_NUMBER/global/networks/NAME "
                "(the project number, not its ID)"
            )
        if gcp.encryption_key:
            key = KMS_KEY.fullmatch(gcp.encryption_key)
            if not key:
                problems.append(
                    f"gcp.encryption_key is {gcp.encryption_key!r}; use projects/PROJECT/"
                    "locations/REGION/keyRings/RING/cryptoKeys/KEY"
                )
            elif key["region"] != gcp.region:
                problems.append(
                    f"gcp.encryption_key is in {key['region']} but the run is in {gcp.region}; "
                    "Vertex AI needs a key in the run's region"
                )
        problems += self._accelerator_problems(warnings)
        for alias in registration.aliases:
            if not ALIAS.fullmatch(alias):
                problems.append(
                    f"register.aliases: {alias!r} is not a Vertex AI version alias; use "
                    "lower-case letters first and last, then letters, digits and '-' "
                    "(e.g. production, candidate-2)"
                )
        if "transformers" in experiment.frameworks() and not registration.serving_image:
            message = (
                "register.serving_image is unset: transformers models are registered with "
                f"images.transformers ({experiment.images.transformers}), which serves no "
                "predictions; set register.serving_image to a container that serves the Model "
                "folder on AIP_HTTP_PORT"
            )
            if registration.deploy:
                problems.append(message.replace(" is unset:", " is needed to deploy:"))
            else:
                warnings.append(message)
        try:
            _gcpc()
            from google.cloud import aiplatform  # noqa: F401
        except PreflightError as exc:
            problems.append(str(exc))
        except ImportError:
            problems.append(
                "--target vertex needs the vertex extra (google-cloud-aiplatform is missing): "
                "pip install -e '.[vertex]'"
            )
        if problems:
            raise PreflightError("\n".join(problems))
        return warnings

    def _accelerator_problems(self, warnings: list[str]) -> list[str]:
        resources = self.experiment.resources.vertex
        region = self.experiment.gcp.region
        accelerator = resources.accelerator
        problems: list[str] = []
        if accelerator:
            offered = ACCELERATORS_BY_REGION.get(region)
            if offered is None:
                warnings.append(
                    f"gcp.region {region} is not in the accelerator table "
                    f"(pipelines/targets/vertex.py); not checking that it offers {accelerator}"
                )
            elif accelerator not in offered:
                regions = sorted(
                    r for r, types in ACCELERATORS_BY_REGION.items() if accelerator in types
                )
                problems.append(
                    f"resources.vertex.accelerator {accelerator} is not offered for Vertex AI "
                    f"training in {region}; use a region that offers it ({', '.join(regions)}) "
                    f"or one of: {', '.join(sorted(offered))}"
                )
        if not accelerator or not self.uses_custom_job():
            return problems
        # A custom job runs on the named machine type: it must carry the accelerator.
        machine = resources.machine_type
        families = MACHINE_FAMILIES[accelerator]
        if not machine.startswith(families):
            return problems + [
                f"resources.vertex.machine_type {machine} does not carry {accelerator}; use a "
                f"{' or '.join(f + '*' for f in families)} machine type"
            ]
        count = self.accelerator_count()
        per_machine = re.search(r"-(\d+)[gt]$", machine)
        if resources.is_tpu and per_machine and int(per_machine[1]) != count:
            problems.append(
                f"resources.vertex.tpu_topology {resources.tpu_topology} is {count} chips but "
                f"{machine} has {per_machine[1]}; the train step is one worker, so use "
                f"{families[0]}{count}t (a single-host slice)"
            )
        elif not resources.is_tpu and per_machine and int(per_machine[1]) != count:
            problems.append(
                f"resources.vertex.count is {count} but {machine} has {per_machine[1]} "
                f"{accelerator}; set count: {per_machine[1]} or pick the machine with {count}"
            )
        elif machine.startswith("g2-standard-"):
            cpus = int(machine.rsplit("-", 1)[1]) if machine.rsplit("-", 1)[1].isdigit() else 0
            if cpus in G2_GPUS and G2_GPUS[cpus] != count:
                problems.append(
                    f"resources.vertex.count is {count} but {machine} has {G2_GPUS[cpus]} "
                    f"{accelerator}; set count: {G2_GPUS[cpus]} or pick the g2 machine with {count}"
                )
        return problems

    # --- submit --------------------------------------------------------------------------

    def labels(self) -> dict[str, str]:
        labels = {"experiment": self.experiment.name}
        commit, dirty = git_commit(self.source_dir)
        if commit:
            labels["git-commit"] = commit
            if dirty:
                labels["git-dirty"] = "true"
        return labels

    def describe(self) -> list[str]:
        """What the run will use: each image (pinned by tag or digest) and the training hardware."""
        lines = ["images:"]
        for field, image in self.used_images().items():
            kind, pin = image_pin(image)
            lines.append(f"  {field}: {image} ({kind} {pin})")
        resources = self.experiment.resources.vertex
        hardware = resources.accelerator and f"{resources.accelerator} x{self.accelerator_count()}"
        if self.uses_custom_job():
            extras = [self.scheduling().lower()]
            if resources.tpu_topology:
                extras.append(f"topology {resources.tpu_topology}")
            if resources.reservation:
                extras.append(f"reservation {resources.reservation}")
            lines.append(
                f"train: Vertex AI custom job on {resources.machine_type}"
                + (f", {hardware}" if hardware else "")
                + f" ({', '.join(extras)}), retries {resources.retries}"
            )
        else:
            lines.append(
                f"train: pipeline task, {hardware or 'no accelerator'}, retries "
                f"{resources.retries} (Vertex picks the machine from CPU, memory and accelerator)"
            )
        return lines

    def run(self) -> dict[str, Any]:
        warnings = self.preflight()
        from google.cloud import aiplatform

        for warning in warnings:
            self._say(f"warning: {warning}")
        for field, (tag, pinned) in self.pin_images().items():
            self._say(f"pinned {field}: {tag} is {pinned.rsplit('@', 1)[1]}")
        for line in self.describe():
            self._say(line)
        gcp = self.experiment.gcp
        with tempfile.TemporaryDirectory() as folder, _sdk_logs_to_stderr():
            package = self.compile(Path(folder) / "pipeline.yaml")
            parameters = _parameter_defaults(package)
            try:
                aiplatform.init(project=gcp.project, location=gcp.region, staging_bucket=gcp.bucket)
                job = aiplatform.PipelineJob(
                    display_name=f"imgclf-{self.experiment.name}",
                    template_path=str(package),
                    pipeline_root=self.pipeline_root(),
                    parameter_values=parameters,
                    enable_caching=self.options.cache,
                    labels=self.labels(),
                    encryption_spec_key_name=gcp.encryption_key,
                )
                job.submit(
                    service_account=gcp.service_account,
                    network=gcp.network,
                    experiment=gcp.experiment,
                )
            except Exception as exc:  # the SDK raises API, transport and its own errors alike
                raise SubmitError(
                    f"Vertex AI did not take the run ({type(exc).__name__}): {exc}"
                ) from exc
        url = CONSOLE.format(region=gcp.region, run=job.name, project=gcp.project)
        self._say(f"submitted {job.resource_name}")
        self._say(f"console: {url}")
        result: dict[str, Any] = {
            "experiment": self.experiment.name,
            "target": self.name,
            "status": "SUBMITTED",
            "run": job.resource_name,
            "url": url,
            "images": self.used_images(),
        }
        if self.options.wait:
            with _sdk_logs_to_stderr():
                result.update(self._follow(job))
        return result

    def _follow(self, job: Any) -> dict[str, Any]:
        """Print every task's state changes until the run ends; the run's status and tasks."""
        seen: dict[str, str] = {}
        tasks: dict[str, dict[str, Any]] = {}
        while True:
            try:
                details = job.task_details
                state = job.gca_resource.state.name
            except Exception as exc:  # a lost poll should not lose the run: say where it is
                raise SubmitError(
                    f"lost track of {job.resource_name} ({exc}); it goes on in Vertex AI: "
                    + CONSOLE.format(
                        region=self.experiment.gcp.region,
                        run=job.name,
                        project=self.experiment.gcp.project,
                    )
                ) from exc
            for task in details:
                name, status = task.task_name, task.state.name
                if seen.get(name) != status:
                    seen[name] = status
                    self._say(f"  {name}: {status}")
                seconds = 0.0
                if task.start_time and task.end_time:
                    seconds = (task.end_time - task.start_time).total_seconds()
                tasks[name] = {"name": name, "status": status, "seconds": seconds}
            if state.endswith(("SUCCEEDED", "FAILED", "CANCELLED")):
                break
            time.sleep(self.poll_seconds)
        status = state.removeprefix("PIPELINE_STATE_")
        result: dict[str, Any] = {
            "status": "SUCCEEDED" if status == "SUCCEEDED" else "FAILED",
            "tasks": list(tasks.values()),
        }
        if status != "SUCCEEDED":
            error = job.gca_resource.error.message
            result["error"] = f"the run ended {status}" + (f": {error}" if error else "")
        return result

    def _say(self, line: str) -> None:
        if not self.options.quiet:
            print(line, file=sys.stderr)


def _parameter_defaults(package: Path) -> dict[str, Any]:
    """The compiled pipeline's parameters with their values, to show on the run."""
    import yaml

    spec = yaml.safe_load(package.read_text())
    parameters = spec["root"]["inputDefinitions"].get("parameters", {})
    return {name: p["defaultValue"] for name, p in parameters.items() if "defaultValue" in p}


@contextlib.contextmanager
def _sdk_logs_to_stderr() -> Iterator[None]:
    """The aiplatform SDK logs to stdout; keep stdout for the result (--json)."""
    handlers = [
        handler
        for name, logger in logging.Logger.manager.loggerDict.items()
        if name.startswith("google.cloud.aiplatform") and isinstance(logger, logging.Logger)
        for handler in logger.handlers
        if isinstance(handler, logging.StreamHandler) and handler.stream is not sys.stderr
    ]
    streams = [handler.setStream(sys.stderr) for handler in handlers]
    try:
        yield
    finally:
        for handler, stream in zip(handlers, streams, strict=True):
            handler.setStream(stream)
