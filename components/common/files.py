"""Small file helpers shared by the steps.

Steps read and write through local paths: on Vertex AI and KFP an artifact's `.path` is a
local mount of its `gs://` (or object-store) URI, so plain file I/O works everywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any


class FileRejected(Exception):
    """A file that must not be read (not a regular file, too large, a broken link); `code` is
    the reason it is quarantined for (components/ingest/validate.py's REASONS)."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail


# Where Vertex AI mounts the project's buckets in every step (Cloud Storage FUSE):
# gs://BUCKET/PATH is GCS_MOUNT + BUCKET/PATH there.
GCS_MOUNT = "/gcs/"


def local_path(path: str | Path) -> Path:
    """A path plain file I/O can use: Vertex AI hands out `gs://` URIs (e.g. AIP_CHECKPOINT_DIR)
    whose Cloud Storage FUSE mount in every step is /gcs/<bucket>/<path>."""
    text = str(path)
    return Path(GCS_MOUNT + text[len("gs://") :]) if text.startswith("gs://") else Path(text)


def mounted_uri(path: str) -> str | None:
    """The `gs://` URI of a path under the Cloud Storage FUSE mount; None for any other path."""
    return "gs://" + path[len(GCS_MOUNT) :] if path.startswith(GCS_MOUNT) else None


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


def read_local(
    path: str | Path, max_bytes: int | None = None, limit: str = "data.max_file_bytes"
) -> bytes:
    """The bytes of the regular file at `path` (links resolved), at most `max_bytes` of them
    (`limit`: the setting that says so, named in the message).

    Anything else (a named pipe, a device, a folder, a broken link) raises FileRejected
    before a byte is read, so that a pipe never blocks and /dev/zero never fills the memory.
    """
    try:
        # O_NONBLOCK: opening a named pipe swapped in after the check must not wait for a writer.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        if os.path.islink(path):
            raise FileRejected("unreadable", f"broken link to {os.readlink(path)!r}") from None
        raise
    with os.fdopen(descriptor, "rb") as file:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise FileRejected("not a regular file", f"a {file_kind(info.st_mode)}")
        return capped_read(file, info.st_size, max_bytes, limit)


def capped_read(
    file: Any, size: int, max_bytes: int | None, limit: str = "data.max_file_bytes"
) -> bytes:
    """`file`'s bytes (`size` of them, as listed), or FileRejected past `max_bytes`."""
    if max_bytes is not None and size > max_bytes:
        raise FileRejected("too large", f"{size:,} bytes > {limit} = {max_bytes:,}")
    data = file.read() if max_bytes is None else file.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:  # it grew while being read
        raise FileRejected("too large", f"more than {limit} = {max_bytes:,} bytes")
    return data


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    kinds = (
        (stat.S_ISFIFO, "named pipe"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISDIR, "folder"),
    )
    return next((name for test, name in kinds if test(mode)), "special file")


def display_name(name: str) -> str:
    """`name` as text that round-trips: bytes that are not UTF-8 (os.fsdecode's surrogates)
    become `\\xNN` escapes, so keys, reports and CSVs can always be written."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
