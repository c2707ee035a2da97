"""The registration subgraphs of the training pipeline (wiring only), added inside the gate's
condition by `pipelines/training.py`.

- folder registry (every target): import the best Model, convert and measure it with the
  experiment's `export` section (`export`), and copy it and the passing exports into
  `<registry_root>/<name>/vN/` (`register_local`), which re-scores the champion on the run's
  test split and moves the `champion` alias only to a version that is no worse;
- Vertex AI Model Registry (the vertex target): then plan the upload (`vertex_registration`),
  upload a new version of the model of the same name or a new model (GCPC `ModelUploadOp`),
  served by our server in the serving image (a custom serving container speaking the KServe v1
  protocol), and, with `register.deploy`, deploy it to an endpoint that is created or reused; with
  `register.batch_predict`, run a Vertex AI batch prediction job on it (GCPC `ModelBatchPredictOp`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from kfp import dsl
from kfp.dsl import Model

from components.export.component import export
from components.register.component import register_local, vertex_registration
from components.register.vertex import MODEL_LABEL
from components.serve.manifests import vertex_container_spec
from components.track.component import track_registration
from pipelines.config import Experiment
from pipelines.errors import require_gcpc

# configure(task, step): the target's per-task settings (image, resources, ...).
Configure = Callable[[Any, str], None]


def add_folder_registration(
    configure: Configure,
    experiment: Experiment,
    *,
    best_model_uri: Any,
    summary: Any,
    dataset: Any,
    registry_root: Any,
    name: Any,
    aliases: Any,
) -> Any:
    """Import the best Model, export it when the experiment says so, and copy it (and the
    exports that passed) into the folder registry. Returns the register task."""
    best_model = dsl.importer(
        artifact_uri=best_model_uri,
        artifact_class=Model,
        reimport=False,
    ).set_display_name("best model")
    exports = {}
    if experiment.export is not None:
        export_task = export(
            model=best_model.output,
            dataset=dataset,
            config=experiment.export.model_dump(mode="json", by_alias=True),
        ).set_display_name("export")
        configure(export_task, "export")
        exports["exports"] = export_task.outputs["exports"]
    register_task = register_local(
        model=best_model.output,
        registry_root=registry_root,
        name=name,
        summary=summary,
        aliases=aliases,
        allow_class_change=experiment.registration.allow_class_change,
        dataset=dataset,
        champion=experiment.gate.champion.model_dump(mode="json"),
        **exports,
    ).set_display_name("register")
    configure(register_task, "register")
    return register_task


def add_tracked_registration(
    configure: Configure,
    tracking: dict[str, Any],
    *,
    record: Any,
    tracked: Any,
    data_snapshot: Any,
) -> Any:
    """Mirror the registered version into the experiment tracker (tracking.mlflow), after the
    track task whose line (`tracked`) says whether tracking is still on for this run."""
    task = track_registration(
        tracking=tracking,
        record=record,
        pipeline_run=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        tracked=tracked,
        data_snapshot=data_snapshot,
    ).set_display_name("track registration")
    task.set_caching_options(False)
    configure(task, "track")
    return task


def serving_image(experiment: Experiment) -> str:
    """The container a registered model is served in on Vertex AI (the cpu image by default)."""
    return experiment.registration.serving_image or experiment.images.cpu


def endpoint_name(experiment: Experiment) -> str:
    registration = experiment.registration
    return registration.endpoint or f"{registration.name}-endpoint"


def add_vertex_registration(
    configure: Configure,
    experiment: Experiment,
    *,
    record: Any,
    summary: Any,
    name: Any,
) -> None:
    """Upload the registered version to the Vertex AI Model Registry with the aliases the
    register step's record gives it (and deploy it when it was promoted)."""
    require_gcpc()
    from google_cloud_pipeline_components.types import artifact_types
    from google_cloud_pipeline_components.v1.model import ModelUploadOp

    registration = experiment.registration
    region = experiment.gcp.region
    plan = vertex_registration(
        summary=summary,
        record=record,
        model_name=name,
        endpoint_name=endpoint_name(experiment) if registration.deploy else "",
        location=region,
    ).set_display_name("find registered model")
    configure(plan, "register")
    plan.set_caching_options(False)  # it reads the registry as it is now
    serving_model = dsl.importer(
        artifact_uri=plan.outputs["serving_uri"],
        artifact_class=artifact_types.UnmanagedContainerModel,
        # our server (components.serve) in the serving image, on the KServe routes of `name`
        metadata={"containerSpec": vertex_container_spec(name, serving_image(experiment))},
    ).set_display_name("serving model")
    upload = functools.partial(
        ModelUploadOp,
        display_name=name,
        description=plan.outputs["description"],
        unmanaged_container_model=serving_model.output,
        version_aliases=plan.outputs["version_aliases"],
        labels=plan.outputs["labels"],
        encryption_spec_key_name=experiment.gcp.encryption_key or "",
        location=region,
    )
    with dsl.If(plan.outputs["parent_model"] != "", name="model-registered"):
        parent = dsl.importer(
            artifact_uri=plan.outputs["parent_model_uri"],
            artifact_class=artifact_types.VertexModel,
            metadata={"resourceName": plan.outputs["parent_model"]},
        ).set_display_name("registered model")
        new_version = upload(parent_model=parent.output).set_display_name("upload version")
        configure(new_version, "register")
    with dsl.Else(name="model-new"):
        new_model = upload().set_display_name("upload model")
        configure(new_model, "register")
    if registration.deploy or registration.batch_predict:
        uploaded = dsl.OneOf(new_version.outputs["model"], new_model.outputs["model"])
    if registration.deploy:
        # only a version the register step promoted replaces what the endpoint serves
        with dsl.If(plan.outputs["promoted"] == True, name="promoted"):  # noqa: E712
            _add_deploy(configure, experiment, plan, uploaded)
    if registration.batch_predict:
        _add_batch_predict(configure, experiment, uploaded)


def _add_batch_predict(configure: Configure, experiment: Experiment, uploaded: Any) -> None:
    """A Vertex AI batch prediction job on the uploaded version: JSON Lines in, JSON Lines out."""
    from google_cloud_pipeline_components.v1.batch_predict_job import ModelBatchPredictOp

    registration = experiment.registration
    batch = registration.batch_predict
    assert batch is not None
    job = ModelBatchPredictOp(
        job_display_name=f"{registration.name}-batch-predict",
        model=uploaded,
        gcs_source_uris=[batch.source],
        instances_format="jsonl",
        predictions_format="jsonl",
        gcs_destination_output_uri_prefix=batch.destination,
        machine_type=batch.machine_type,
        starting_replica_count=batch.replicas,
        max_replica_count=batch.replicas,
        labels={MODEL_LABEL: registration.name},
        encryption_spec_key_name=experiment.gcp.encryption_key or "",
        location=experiment.gcp.region,
    ).set_display_name("batch predict")
    configure(job, "register")
    job.set_caching_options(False)  # the source may change under the same URI


def _add_deploy(configure: Configure, experiment: Experiment, plan: Any, uploaded: Any) -> None:
    """Deploy the uploaded model to the endpoint of that name, created when there is none."""
    from google_cloud_pipeline_components.types import artifact_types
    from google_cloud_pipeline_components.v1.endpoint import EndpointCreateOp, ModelDeployOp

    registration = experiment.registration
    with dsl.If(plan.outputs["endpoint"] != "", name="endpoint-exists"):
        existing = dsl.importer(
            artifact_uri=plan.outputs["endpoint_uri"],
            artifact_class=artifact_types.VertexEndpoint,
            metadata={"resourceName": plan.outputs["endpoint"]},
        ).set_display_name("existing endpoint")
    with dsl.Else(name="endpoint-new"):
        created = EndpointCreateOp(
            display_name=endpoint_name(experiment),
            labels={MODEL_LABEL: registration.name},
            encryption_spec_key_name=experiment.gcp.encryption_key or "",
            location=experiment.gcp.region,
        ).set_display_name("create endpoint")
        configure(created, "register")
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
    configure(deploy, "register")
    deploy.set_caching_options(False)
