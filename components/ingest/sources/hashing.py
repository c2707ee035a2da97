"""What a data snapshot is made of: hashed lines for local files (path, size, modification
time), whole-file content, and `gs://` object listings (name, size, generation).

The source kinds hash what they hold with these; components/ingest/snapshot.py adds them up.
Nothing here decodes an image or reads more of a file than its content hash needs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

CHUNK = 1 << 20


class SnapshotError(ValueError):
    """The source cannot be listed; the message says what to fix."""


@dataclass(frozen=True)
class RemoteObject:
    name: str
    size: int
    generation: str


# gs:// listing: (bucket, prefix) -> every object under the prefix. The default goes through
# google-cloud-storage; tests pass a fake.
Lister = Callable[[str, str], Iterable[RemoteObject]]


class Hash(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


# --- local files ---------------------------------------------------------------------------------


def line(*fields: object) -> bytes:
    """One hashed line; a file name's bytes that are not UTF-8 are hashed as they are."""
    return ("\0".join(str(f) for f in fields) + "\n").encode("utf-8", "surrogateescape")


def size_and_time(path: str) -> tuple[int | str, int | str]:
    """The file's size and mtime (links followed; a broken link: the link's own)."""
    try:
        info = os.stat(path)
    except OSError:
        try:
            info = os.lstat(path)
        except OSError:
            return "missing", "missing"
    return info.st_size, info.st_mtime_ns


def walk_files(root: str) -> Iterator[tuple[str, int | str, int | str]]:
    """(relative posix path, size, mtime in ns) of every non-hidden file under `root`, in sorted
    order, hidden folders skipped as ingest skips them, links to folders not followed (no
    loops). Streams: holds one folder's entries. For a folder that is not a class-per-folder
    source (an `hf:` dataset saved to disk)."""
    stack = [("", root)]
    while stack:
        relative, folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise SnapshotError(f"cannot list {folder}: {exc.strerror or exc}") from None
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = f"{relative}{entry.name}"
            if entry.is_dir(follow_symlinks=False):
                subfolders.append((f"{path}/", entry.path))
            else:
                yield (path, *size_and_time(entry.path))
        # popped last-first: reversed keeps the walk in sorted order
        stack.extend(reversed(subfolders))


def hash_tree(root: str, digest: Hash) -> int:
    """A folder that is not a class-per-folder source, walked whole; the files counted."""
    if not os.path.isdir(root):
        raise SnapshotError(f"{root} is not a directory")
    count = 0
    for path, size, mtime in walk_files(root):
        digest.update(line(path, size, mtime))
        count += 1
    return count


def hash_content(path: str, digest: Hash) -> None:
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)


# --- gs:// ---------------------------------------------------------------------------------------


def split_gs(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("gs://").partition("/")
    if not bucket:
        raise SnapshotError(f"{uri} names no bucket; use gs://BUCKET/PATH")
    return bucket, prefix


def gcs_listing(bucket: str, prefix: str) -> Iterator[RemoteObject]:
    """Every object under gs://bucket/prefix with its size and generation (one listing)."""
    try:
        from google.cloud import storage
    except ImportError:
        raise SnapshotError(
            "snapshotting a gs:// source lists the bucket with google-cloud-storage: "
            "pip install 'image-classification-pipelines[vertex]'"
        ) from None
    try:
        for blob in storage.Client().list_blobs(bucket, prefix=prefix):
            yield RemoteObject(blob.name, int(blob.size or 0), str(blob.generation))
    except Exception as exc:  # auth, missing bucket, network: all say what to fix
        raise SnapshotError(
            f"cannot list gs://{bucket}/{prefix}: {type(exc).__name__}: {exc}; check the URI and "
            "that `gcloud auth application-default login` gives access to it"
        ) from None


def hash_remote_tree(uri: str, digest: Hash, lister: Lister) -> int:
    """Every non-hidden object under the `gs://` folder `uri` (ending in `/`); the objects counted."""
    bucket, prefix = split_gs(uri)
    count = 0
    for blob in sorted(lister(bucket, prefix), key=lambda b: b.name):
        relative = blob.name[len(prefix) :]
        if any(part.startswith(".") for part in relative.split("/")) or relative.endswith("/"):
            continue
        digest.update(f"{relative}\0{blob.size}\0{blob.generation}\n".encode())
        count += 1
    if not count:
        raise SnapshotError(f"{uri} holds no objects; expected {uri}<class>/<image files>")
    return count


def hash_remote_objects(uris: list[str], digest: Hash, lister: Lister) -> None:
    """The listed gs:// objects' sizes and generations, from one listing of their common prefix."""
    buckets = {split_gs(u)[0] for u in uris}
    for bucket in sorted(buckets):
        names = sorted(split_gs(u)[1] for u in uris if split_gs(u)[0] == bucket)
        prefix = os.path.commonprefix(names).rsplit("/", 1)[0] if "/" in names[0] else ""
        found = {b.name: b for b in lister(bucket, prefix)}
        for name in names:
            blob = found.get(name)
            state = f"{blob.size}\0{blob.generation}" if blob else "missing"
            digest.update(f"gs://{bucket}/{name}\0{state}\n".encode())


def read_remote_text(uri: str) -> str:
    try:
        from google.cloud import storage
    except ImportError:
        raise SnapshotError(
            f"reading {uri} needs google-cloud-storage: "
            "pip install 'image-classification-pipelines[vertex]'"
        ) from None
    bucket, name = split_gs(uri)
    try:
        return str(storage.Client().bucket(bucket).blob(name).download_as_text())
    except Exception as exc:
        raise SnapshotError(f"cannot read {uri}: {type(exc).__name__}: {exc}") from None
