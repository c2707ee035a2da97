"""Which model a server serves, and loading it the way `components.predict` does.

`--model` names a registered model's folder (`<registry>/<name>`: its champion, from the
folder's `aliases.json`; the latest version where a registry has no such file), a version folder
(`<registry>/<name>/vN`), a Model artifact folder, or a `gs://` URI of one of them (Vertex AI's
AIP_STORAGE_URI), which is copied to a local folder first.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.common.files import read_json
from components.common.model_card import CARD_FILE, ModelCard
from components.models.artifact import ModelLoadError


@dataclass(frozen=True)
class ServedVersion:
    """The folder a server loads and what to call it."""

    path: Path  # a version folder or a Model artifact folder
    name: str  # the model's name in the protocol's routes
    version: str  # "v3", or "" for a bare Model artifact
    note: str = ""  # one line on how the version was chosen, for the console


def _registered_name(path: Path) -> tuple[str, str]:
    """(registered name, version) of a version folder, from its record; else the card's name."""
    from components.register.folders import RECORD_FILE

    if (path / RECORD_FILE).is_file():
        record = read_json(path / RECORD_FILE)
        return str(record["name"]), str(record["version"])
    model_dir = path / "model" if (path / "model" / CARD_FILE).is_file() else path
    return ModelCard.load(model_dir).name, ""


def resolve_served(path: str | Path) -> ServedVersion:
    """The version `path` names (see the module's docstring); raises ModelLoadError."""
    from components.register.champion import (
        ALIASES_FILE,
        CHAMPION,
        AliasError,
        champion_version,
        read_aliases,
    )
    from components.register.folders import versions

    path = Path(path)
    if not path.is_dir():
        raise ModelLoadError(
            f"{path} is not a folder; pass a registered model (runs/registry/<name>), one of its "
            "versions (runs/registry/<name>/vN) or a Model artifact folder"
        )
    if (path / CARD_FILE).is_file() or (path / "model" / CARD_FILE).is_file():
        name, version = _registered_name(path)
        return ServedVersion(path, name, version)
    found = versions(path)
    if not found:
        raise ModelLoadError(
            f"{path} holds no registered version (no v<N>/ folder with a registration record) and "
            "no model_card.json; register a model first (a pipeline run with a register section)"
        )
    try:
        chosen = champion_version(path)
    except AliasError as exc:
        raise ModelLoadError(f"{exc}; or pass a version folder") from None
    assert chosen is not None
    if CHAMPION in read_aliases(path):
        note = f"{chosen.name}: the {CHAMPION}"
    else:
        note = (
            f"{path.name} has no {CHAMPION} alias ({ALIASES_FILE}): serving its latest version, "
            f"{chosen.name}"
        )
    name, version = _registered_name(chosen)
    return ServedVersion(chosen, name, version, note)


def download(uri: str, destination: Path | None = None) -> Path:
    """Copy every object under the `gs://` prefix `uri` into a local folder; returns it."""
    from google.cloud import storage

    bucket_name, _, prefix = uri.removeprefix("gs://").partition("/")
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    target = destination or Path(tempfile.mkdtemp(prefix="served-model-"))
    count = 0
    for blob in storage.Client().list_blobs(bucket_name, prefix=prefix):
        relative = blob.name[len(prefix) :]
        if not relative or relative.endswith("/"):
            continue
        local = target / relative
        local.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(local))
        count += 1
    if not count:
        raise ModelLoadError(f"{uri} holds no files; point --model at a registered version")
    return target


def load_served(version: ServedVersion, format: str) -> Any:
    """The version's classifier for `format` (NATIVE or an exported format), as
    predict loads it; raises ModelLoadError with what to fix."""
    from components.predict.cli import load_version

    return load_version(version.path, format)
