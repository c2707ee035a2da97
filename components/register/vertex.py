"""What the Vertex AI Model Registry upload needs, found when the pipeline runs.

Plain Python behind the `vertex_registration` component: it reads the compare summary and the
folder registry's record, picks the serving artifact (the registered version folder, which our
serving container loads whatever the framework), and looks up the model and endpoint already
registered under the experiment's names.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from components.common.export_artifact import VERSION_DIR
from components.common.files import local_path, mounted_uri
from components.common.results import CompareSummary, RegistrationRecord

API_ROOT = "https://{region}-aiplatform.googleapis.com/v1/"
MODEL_LABEL = "imgclf_model"  # label of the models and endpoints this pipeline registers
# The aliases a promoted version takes in the Model Registry: our champion, and Vertex's own
# `default` (the version a command without a version uses). An alias names one version of a
# model at a time: applying it to the new version removes it from the one that had it.
PROMOTED_ALIASES = ("champion", "default")


def stage_exports(version_dir: Path, model_dir: Path) -> Path | None:
    """Copy the version's export/ into the Model folder Vertex uploads when the version folder
    itself cannot be uploaded, so the exported files are part of the registered model's
    artifacts. Returns where they went (None: no exports)."""
    source = Path(version_dir) / VERSION_DIR
    if not source.is_dir():
        return None
    destination = Path(model_dir) / VERSION_DIR
    shutil.copytree(source, destination, dirs_exist_ok=True)
    return destination


def _latest(resource: Any, display_name: str, project: str, location: str) -> str:
    """Resource name of the newest `resource` (aiplatform.Model, .Endpoint) so named, or ""."""
    found = resource.list(
        filter=f'display_name="{display_name}"',
        order_by="create_time",
        project=project,
        location=location,
    )
    return found[0].resource_name if found else ""


def plan_registration(
    summary: CompareSummary,
    record: RegistrationRecord,
    model_name: str,
    endpoint_name: str,
    project: str,
    location: str,
) -> dict[str, Any]:
    """What the Model Registry upload needs.

    The serving artifact is the version folder in the folder registry (`record`, the register
    step's result, under /gcs/BUCKET/...), which outlives the run's artifacts and holds the
    Model and its exports; the serving container (our server, components.serve) loads it from
    Vertex's copy (AIP_STORAGE_URI). The model and endpoint already registered under these
    names come as resource name and API URI, or "" when there is none. A version the register
    step promoted (its record's champion decision) takes PROMOTED_ALIASES besides the
    experiment's aliases; one it did not promote takes the experiment's aliases only and is
    not deployed.
    """
    from google.cloud import aiplatform

    best = summary.best
    exports = f"; exports {', '.join(record.exports)}" if record.exports else ""
    mounted = mounted_uri(record.path)
    if mounted is not None:
        serving_uri = mounted.rstrip("/")
    else:
        serving_uri = best.model_uri.rstrip("/")
        if record.exports:
            stage_exports(local_path(record.path), local_path(serving_uri))
    api = API_ROOT.format(region=location)
    parent = _latest(aiplatform.Model, model_name, project, location)
    endpoint = (
        _latest(aiplatform.Endpoint, endpoint_name, project, location) if endpoint_name else ""
    )
    decision = record.details.get("champion")
    promoted = bool(decision.get("promoted", True)) if isinstance(decision, dict) else True
    aliases = list(record.aliases) + [a for a in PROMOTED_ALIASES if promoted]
    labels = {MODEL_LABEL: model_name}
    if record.version:
        labels["registry_version"] = record.version.lower()
    return {
        "serving_uri": serving_uri,
        "description": (
            f"{record.version + ': ' if record.version else ''}{best.name} seed {best.seed}, "
            f"{summary.metric} {best.value:.4f}{exports}"
        ),
        "labels": labels,
        "parent_model": parent,
        "parent_model_uri": api + parent if parent else "",
        "endpoint": endpoint,
        "endpoint_uri": api + endpoint if endpoint else "",
        "version_aliases": list(dict.fromkeys(aliases)),
        "promoted": promoted,
    }
