"""What the Vertex AI Model Registry upload needs, found when the pipeline runs.

Plain Python behind the `vertex_registration` component: it reads the compare summary and the
folder registry's record, picks the serving artifact and container of the best model's
framework, and looks up the model and endpoint already registered under the experiment's names.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from components.common.export_artifact import VERSION_DIR
from components.common.files import local_path
from components.common.results import CompareSummary, RegistrationRecord

API_ROOT = "https://{region}-aiplatform.googleapis.com/v1/"
# Where the keras trainer exports the SavedModel that a TensorFlow serving container loads.
KERAS_SAVED_MODEL = "keras/saved_model"
# Vertex's newest prebuilt TensorFlow prediction container; {multiregion} is us, europe or asia.
KERAS_SERVING_IMAGE = "{multiregion}-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"
MODEL_LABEL = "imgclf_model"  # label of the models and endpoints this pipeline registers
# Where a version's exports go inside the uploaded artifact: TensorFlow Serving ignores a
# SavedModel's assets.extra/, and the transformers serving container only reads hf/.
SERVING_EXPORTS = {"keras": f"assets.extra/{VERSION_DIR}", "transformers": VERSION_DIR}


def stage_exports(version_dir: Path, serving_dir: Path, framework: str) -> Path | None:
    """Copy the version's export/ into the folder Vertex uploads, so the exported files are
    part of the registered model's artifacts. Returns where they went (None: no exports)."""
    source = Path(version_dir) / VERSION_DIR
    if not source.is_dir():
        return None
    destination = Path(serving_dir) / SERVING_EXPORTS[framework]
    shutil.copytree(source, destination, dirs_exist_ok=True)
    return destination


def multiregion(region: str) -> str:
    """The Artifact Registry multi-region of Vertex's prebuilt containers for `region`."""
    if region.startswith("europe-"):
        return "europe"
    if region.startswith(("asia-", "australia-", "me-")):
        return "asia"
    return "us"


def keras_serving_image(region: str) -> str:
    """Vertex's prebuilt TensorFlow serving container nearest to `region`."""
    return KERAS_SERVING_IMAGE.format(multiregion=multiregion(region))


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
    keras_serving_image: str,
    transformers_serving_image: str,
    endpoint_name: str,
    project: str,
    location: str,
) -> dict[str, Any]:
    """What the Model Registry upload needs.

    The serving artifact is the copy in the folder registry (`record`, the register step's
    result, under /gcs/BUCKET/...), which outlives the run's artifacts; the version's exports
    are copied into it so they are uploaded with the model. The serving container is the one
    of the best model's framework. The model and endpoint already registered under
    these names come as resource name and API URI, or "" when there is none.
    """
    from google.cloud import aiplatform

    best = summary.best
    if record.path.startswith("/gcs/"):
        model_uri = "gs://" + record.path.removeprefix("/gcs/").rstrip("/") + "/model"
    else:
        model_uri = best.model_uri.rstrip("/")
    framework = record.framework or best.framework or "keras"
    if framework == "keras":
        serving_uri, serving_image = f"{model_uri}/{KERAS_SAVED_MODEL}", keras_serving_image
    else:
        serving_uri, serving_image = model_uri, transformers_serving_image
    exports = ""
    if record.exports:
        stage_exports(local_path(record.path), local_path(serving_uri), framework)
        exports = f"; exports {', '.join(record.exports)} in {SERVING_EXPORTS[framework]}/"
    api = API_ROOT.format(region=location)
    parent = _latest(aiplatform.Model, model_name, project, location)
    endpoint = (
        _latest(aiplatform.Endpoint, endpoint_name, project, location) if endpoint_name else ""
    )
    labels = {MODEL_LABEL: model_name}
    if record.version:
        labels["registry_version"] = record.version.lower()
    return {
        "serving_uri": serving_uri,
        "serving_image": serving_image,
        "description": (
            f"{record.version + ': ' if record.version else ''}{best.name} seed {best.seed}, "
            f"{summary.metric} {best.value:.4f}{exports}"
        ),
        "labels": labels,
        "parent_model": parent,
        "parent_model_uri": api + parent if parent else "",
        "endpoint": endpoint,
        "endpoint_uri": api + endpoint if endpoint else "",
    }
