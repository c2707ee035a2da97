"""Vertex training hardware: what the experiment's `resources.vertex` amounts to (the
accelerators a TPU topology holds, the scheduling, a line that describes it), and the
Vertex AI custom job that training runs as when a plain pipeline task cannot express its
hardware (a TPU slice with its topology, spot or flex-start scheduling, a reservation, a
TensorBoard, several machines).

Several machines (`resources.vertex.replica_count`): worker pool 0 holds the chief, pool 1 the
other replicas, with the same image, machine and accelerator. Every replica runs the train step;
it reads Vertex's CLUSTER_SPEC and joins the others through torchrun
(components/train/cluster.py)."""

from __future__ import annotations

import functools
from typing import Any

from kfp import dsl

from pipelines.config import Experiment, VertexResources
from pipelines.errors import require_gcpc

# Resolved by Vertex AI Pipelines when the task runs (google_cloud_pipeline_components'
# _placeholders): the PipelineJob's service account, network and CMEK key.
SERVICE_ACCOUNT_PLACEHOLDER = "{{$.pipeline_service_account}}"
NETWORK_PLACEHOLDER = "{{$.pipeline_network}}"
ENCRYPTION_KEY_PLACEHOLDER = "{{$.pipeline_encryption_key_name}}"
RESERVATION_KEY = "compute.googleapis.com/reservation-name"


def tpu_chips(topology: str) -> int:
    return functools.reduce(lambda a, b: a * b, (int(n) for n in topology.split("x")), 1)


def uses_custom_job(experiment: Experiment) -> bool:
    """Whether training needs a Vertex AI custom job rather than a plain pipeline task."""
    resources = experiment.resources.vertex
    return bool(
        resources.is_tpu
        or resources.replica_count > 1
        or resources.spot
        or resources.flex_start
        or resources.reservation
        or experiment.gcp.tensorboard
    )


def scheduling(resources: VertexResources) -> str:
    return "SPOT" if resources.spot else "FLEX_START" if resources.flex_start else "STANDARD"


def accelerator_count(resources: VertexResources) -> int:
    if resources.is_tpu and resources.tpu_topology:
        return tpu_chips(resources.tpu_topology)
    return resources.count


def describe_training(experiment: Experiment) -> str:
    """One line on the training hardware, as the run will use it."""
    resources = experiment.resources.vertex
    count = accelerator_count(resources)
    hardware = resources.accelerator and f"{resources.accelerator} x{count}"
    if not uses_custom_job(experiment):
        return (
            f"train: pipeline task, {hardware or 'no accelerator'}, retries "
            f"{resources.retries} (Vertex picks the machine from CPU, memory and accelerator)"
        )
    extras = [scheduling(resources).lower()]
    if resources.replica_count > 1:
        extras.append(f"{resources.replica_count} replicas: chief + {resources.replica_count - 1}")
    if resources.tpu_topology:
        extras.append(f"topology {resources.tpu_topology}")
    if resources.reservation:
        extras.append(f"reservation {resources.reservation}")
    return (
        f"train: Vertex AI custom job on {resources.machine_type}"
        + (f", {hardware}" if hardware else "")
        + f" ({', '.join(extras)}), retries {resources.retries}"
    )


def training_job(component: Any, experiment: Experiment, image: str, framework: str) -> Any:
    """The train component as the experiment's Vertex AI custom job, called like the component."""
    resources = experiment.resources.vertex
    gcp = experiment.gcp
    wrapped = custom_job_component(
        component,
        image=image,
        tpu_topology=resources.tpu_topology,
        display_name=f"imgclf-{experiment.name}-train-{framework}",
        machine_type=resources.machine_type,
        accelerator_type=resources.accelerator or "",
        accelerator_count=accelerator_count(resources),
        replica_count=resources.replica_count,
        strategy=scheduling(resources),
        max_wait_duration=resources.max_wait_duration,
        reservation=resources.reservation,
        network=NETWORK_PLACEHOLDER if gcp.network else "",
        encryption_spec_key_name=ENCRYPTION_KEY_PLACEHOLDER if gcp.encryption_key else "",
        tensorboard=gcp.tensorboard or "",
        experiment=experiment.name,
    )
    if gcp.tensorboard and gcp.bucket:
        # A TensorBoard needs the job's output directory; one per task keeps each
        # candidate's AIP_CHECKPOINT_DIR (beneath it) its own.
        return functools.partial(
            wrapped,
            base_output_directory=f"{gcp.bucket.rstrip('/')}/custom-jobs/"
            f"{dsl.PIPELINE_JOB_ID_PLACEHOLDER}/{dsl.PIPELINE_TASK_ID_PLACEHOLDER}",
        )
    return wrapped


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
    whose workers run `image`, as the pipeline's service account: one chief in pool 0 and, with
    `replica_count` above 1, the other replicas in pool 1 (GCPC copies pool 0's spec there);
    each worker pool spec gets the TPU topology GCPC has no argument for. `settings` are that
    helper's arguments."""
    require_gcpc()
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
