"""The folder registry in the experiment's bucket, read from here before a submission: the steps
see it through the Cloud Storage FUSE mount, this machine through the Cloud Storage API."""

from __future__ import annotations

import json
import re
import sys

from components.common.files import GCS_MOUNT
from components.common.model_card import CARD_FILE
from components.register.folders import RECORD_FILE
from pipelines.config import Experiment

REGISTRY_TIMEOUT_S = 20.0  # each Cloud Storage call of the registry preflight


def bucket_registry_latest(
    experiment: Experiment, mounted_root: str
) -> tuple[str, list[str]] | None:
    """The latest version of the experiment's registered model in the folder registry in its
    bucket (the steps see it at /gcs/BUCKET/registry) and its class names; None, with a note on
    stderr, when it cannot be read from here."""
    bucket, _, prefix = mounted_root.removeprefix(GCS_MOUNT).partition("/")
    folder = f"{prefix}/{experiment.registration.name}/"
    try:
        from google.cloud import storage

        client = storage.Client(project=experiment.gcp.project)
        numbers = [
            int(m.group(1))
            for blob in client.list_blobs(bucket, prefix=folder, timeout=REGISTRY_TIMEOUT_S)
            if (
                m := re.fullmatch(
                    re.escape(folder) + r"v(\d+)/" + re.escape(RECORD_FILE), blob.name
                )
            )
        ]
        if not numbers:
            return None
        version = f"v{max(numbers)}"
        card = client.bucket(bucket).blob(f"{folder}{version}/{CARD_FILE}")
        names = json.loads(card.download_as_bytes(timeout=REGISTRY_TIMEOUT_S)).get("class_names")
    except Exception as exc:  # no credentials, no network, no such bucket: the step checks
        print(
            f"note: could not read the registry gs://{bucket}/{folder} from here "
            f"({type(exc).__name__}); the register step checks its classes",
            file=sys.stderr,
        )
        return None
    return version, list(names or [])
