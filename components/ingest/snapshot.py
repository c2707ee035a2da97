"""The data snapshot: a cheap hash of what a source holds, taken before the pipeline compiles.

The snapshot is an input of the ingest step, so the pipeline cache re-runs ingest (and all that
follows) when the data changes and reuses it when nothing did. It never decodes an image:

- `folder:PATH`: the relative path, size and modification time of every file ingest will read,
  from the listing ingest reads (listing.py's `list_folder`: hidden entries skipped, links to
  folders followed once, any file name); a `gs://` folder: object names, sizes, generations.
- `csv:FILE`: the manifest's rows plus the size and time of every file it lists.
- `npz:FILE`: the file's content hash.
- `tfds:NAME[:CONFIG]`: the builder's name and version (no download).
- `hf:REPO`: a local folder's snapshot as for `folder:`, else the Hub revision (commit sha).
- `sklearn:digits`: the scikit-learn version that ships the data.

`data.extra_train_sources` are part of the snapshot too.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from components.ingest.listing import CsvRow, Listings, SourceError
from components.spec import DataConfig

CHUNK = 1 << 20
GCS_MOUNT = "/gcs/"  # where Vertex AI steps see the buckets (Cloud Storage FUSE)
# The part of the hex digest shown on the console; the whole digest is the pipeline parameter.
SHOWN_DIGITS = 6


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


class _Hash(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


@dataclass
class Snapshot:
    digest: str
    files: int | None  # files or objects listed; None where the source has no file listing
    seconds: float
    notes: list[str] = field(default_factory=list)  # what could not be looked at, and why

    def describe(self) -> str:
        """`data snapshot 3f2a9c… 12,430 files, 1.1 s`."""
        counted = f" {self.files:,} files," if self.files is not None else ""
        text = f"data snapshot {self.digest[:SHOWN_DIGITS]}…{counted} {self.seconds:.1f} s"
        return "; ".join([text, *self.notes])


def take_snapshot(
    data: DataConfig,
    lister: Lister | None = None,
    not_here: tuple[str, ...] = (),
    listings: Listings | None = None,
) -> Snapshot:
    """Snapshot `data.source` and every `data.extra_train_sources` entry.

    `not_here`: path prefixes that exist only where the steps run (Vertex's `/gcs/` mount of the
    buckets, a cluster's data volume). A folder under `/gcs/BUCKET/` is listed as
    `gs://BUCKET/`; other such paths cannot be looked at, which the snapshot's notes say.
    `listings`: the local sources' listings the data preflight made, so nothing is listed twice.
    """
    listings = listings if listings is not None else Listings()
    started = time.perf_counter()
    digest = hashlib.sha256()
    total: int | None = None
    notes: list[str] = []
    for source in [data.source, *data.extra_train_sources]:
        digest.update(f"source\0{source}\n".encode())
        visible = _visible(source, not_here, notes)
        if visible is None:
            continue
        try:
            files = _snapshot_source(visible, data, digest, lister or gcs_listing, listings, notes)
        except SourceError as exc:  # the listing's own message says what to fix
            raise SnapshotError(str(exc)) from None
        if files is not None:
            total = (total or 0) + files
    return Snapshot(digest.hexdigest(), total, time.perf_counter() - started, notes)


def _visible(source: str, not_here: tuple[str, ...], notes: list[str]) -> str | None:
    """The source as this machine can list it, or None (with a note) when it cannot."""
    scheme, _, rest = source.partition(":")
    if scheme not in ("folder", "csv", "npz") or not rest.startswith(not_here):
        return source
    if scheme == "folder" and rest.startswith(GCS_MOUNT):
        return f"folder:gs://{rest[len(GCS_MOUNT) :]}"
    notes.append(
        f"{source} exists only where the steps run: the cache sees changes to the config, "
        "not to those files (run with --no-cache after changing them)"
    )
    return None


def _snapshot_source(
    source: str,
    data: DataConfig,
    digest: _Hash,
    lister: Lister,
    listings: Listings,
    notes: list[str],
) -> int | None:
    scheme, _, rest = source.partition(":")
    if scheme == "folder":
        if rest.startswith("gs://"):
            return _remote(rest.rstrip("/") + "/", digest, lister)
        return _listed_folder(rest, data, digest, listings)
    if scheme == "csv":
        if rest.startswith("gs://"):
            return _csv(rest, data, digest, lister)
        return _listed_csv(listings.csv(rest, data), digest, lister)
    if scheme == "npz":
        return _npz(rest, digest)
    if scheme == "tfds":
        _tfds(rest, digest)
        return None
    if scheme == "hf":
        return _hf(rest, digest, notes)
    if scheme == "sklearn":
        import sklearn

        digest.update(f"sklearn\0{sklearn.__version__}\n".encode())
        return None
    raise SnapshotError(f"data source '{source}' has no snapshot; use one of folder:, csv:, ...")


# --- local files ---------------------------------------------------------------------------------


def _line(*fields: object) -> bytes:
    """One hashed line; a file name's bytes that are not UTF-8 are hashed as they are."""
    return ("\0".join(str(f) for f in fields) + "\n").encode("utf-8", "surrogateescape")


def _size_and_time(path: str) -> tuple[int | str, int | str]:
    """The file's size and mtime (links followed; a broken link: the link's own)."""
    try:
        info = os.stat(path)
    except OSError:
        try:
            info = os.lstat(path)
        except OSError:
            return "missing", "missing"
    return info.st_size, info.st_mtime_ns


def _listed_folder(root: str, data: DataConfig, digest: _Hash, listings: Listings) -> int:
    if not os.path.isdir(root):
        raise SnapshotError(
            f"data.source folder:{root} is not a directory; expected {root}/<class>/<image files>"
        )
    listing = listings.folder(root, data)
    digest.update(_line("root", listing.root))
    count = 0
    for name, relatives in listing.classes.items():
        folder = os.path.join(listing.root, name)
        for relative in relatives:  # posix-relative: a local path on the systems we run on
            size, mtime = _size_and_time(os.path.join(folder, relative))
            digest.update(_line(f"{name}/{relative}", size, mtime))
            count += 1
    return count


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
                yield (path, *_size_and_time(entry.path))
        # popped last-first: reversed keeps the walk in sorted order
        stack.extend(reversed(subfolders))


def _folder(root: str, digest: _Hash) -> int:
    """A folder that is not a class-per-folder source, walked whole."""
    if not os.path.isdir(root):
        raise SnapshotError(f"{root} is not a directory")
    count = 0
    for path, size, mtime in walk_files(root):
        digest.update(_line(path, size, mtime))
        count += 1
    return count


def _content(path: str, digest: _Hash) -> None:
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)


def _npz(file: str, digest: _Hash) -> int:
    if not os.path.isfile(file):
        raise SnapshotError(f"data.source npz:{file} does not exist; give the path of an .npz file")
    _content(file, digest)
    return 1


def _listed_csv(rows: list[CsvRow], digest: _Hash, lister: Lister) -> int:
    """A local manifest: its rows (what ingest reads) and each listed file's size and time."""
    uris = []
    for row in rows:
        digest.update(_line("row", row.path, row.label, row.split or ""))
        if "://" in row.location:
            uris.append(row.location)
        else:
            digest.update(_line(row.location, *_size_and_time(row.location)))
    if uris:
        _listed_remote(uris, digest, lister)
    return 1 + len(rows)


def _csv(file: str, data: DataConfig, digest: _Hash, lister: Lister) -> int:
    """A manifest in a bucket: its text and the listed objects' sizes and generations."""
    text = _read_remote_text(file)
    digest.update(text.encode())
    rows = csv.DictReader(io.StringIO(text))
    header = rows.fieldnames or []
    column = "path" if "path" in header else data.image_column
    if column not in header:
        return 1  # the manifest's hash covers it; ingest reports the missing column
    base = file.rsplit("/", 1)[0]
    listed = [(row.get(column) or "").strip() for row in rows]
    uris = [path if "://" in path else f"{base}/{path}" for path in filter(None, listed)]
    if uris:
        _listed_remote(uris, digest, lister)
    return 1 + len(uris)


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


def _remote(uri: str, digest: _Hash, lister: Lister) -> int:
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


def _listed_remote(uris: list[str], digest: _Hash, lister: Lister) -> None:
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


def _read_remote_text(uri: str) -> str:
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


# --- tfds and hf ---------------------------------------------------------------------------------


def _tfds(spec: str, digest: _Hash) -> None:
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise SnapshotError(
            "tfds: sources need tensorflow-datasets: pip install 'image-classification-pipelines[data]'"
        ) from None
    name, _, config = spec.partition(":")
    try:
        builder = tfds.builder(f"{name}/{config}" if config else name)
    except Exception as exc:  # DatasetNotFoundError, bad config
        raise SnapshotError(f"data.source tfds:{spec}: {str(exc).splitlines()[0]}") from None
    digest.update(f"tfds\0{builder.info.full_name}\0{builder.version}\n".encode())


def _hf(spec: str, digest: _Hash, notes: list[str]) -> int | None:
    location = spec
    head, sep, tail = spec.rpartition(":")
    if sep and head and "/" not in tail and not os.path.exists(spec):
        location = head
    if os.path.isdir(location):
        return _folder(location, digest)
    revision = hub_revision(location, notes)
    digest.update(f"hf\0{spec}\0{revision}\n".encode())
    return None


def hub_revision(repo: str, notes: list[str]) -> str:
    """The Hub dataset's current commit sha, or "unresolved" with a note saying why."""
    try:
        from huggingface_hub import HfApi

        sha = HfApi().dataset_info(repo, timeout=10).sha
    except Exception as exc:  # offline, private, unknown id
        notes.append(
            f"hf:{repo}: revision not resolved ({type(exc).__name__}); "
            "a changed Hub dataset is not seen by the cache"
        )
        return "unresolved"
    return str(sha)
