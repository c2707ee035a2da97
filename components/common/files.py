"""Small file helpers shared by the steps.

Steps read and write through local paths: on Vertex AI and KFP an artifact's `.path` is a
local mount of its `gs://` (or object-store) URI, so plain file I/O works everywhere.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any


def local_path(path: str | Path) -> Path:
    """A path plain file I/O can use: Vertex AI hands out `gs://` URIs (e.g. AIP_CHECKPOINT_DIR)
    whose Cloud Storage FUSE mount in every step is /gcs/<bucket>/<path>."""
    text = str(path)
    return Path("/gcs") / text[len("gs://") :] if text.startswith("gs://") else Path(text)


def write_json(path: str | Path, payload: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=_jsonable) + "\n")
    return path


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def copy_tree(source: str | Path, destination: str | Path) -> Path:
    destination = Path(destination)
    shutil.copytree(source, destination, dirs_exist_ok=True)
    return destination


def _jsonable(value: Any) -> Any:
    # numpy scalars and arrays, Paths and tuples reach the artifacts through metrics and configs.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
