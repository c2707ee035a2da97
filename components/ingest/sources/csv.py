"""`csv:FILE`: a manifest with a path column (`path`, else `data.image_column`) and a label
column (`data.label_column`), optionally a `split` column (train, validation or test).

Relative paths are resolved against the CSV's folder; FILE may be a `gs://` URI. The manifest
is read by listing.py's `list_csv`, shared with the data preflight and the snapshot.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
from collections.abc import Iterator
from functools import partial
from typing import Any

from components.ingest.sources.base import Item, PathKind, SnapshotContext, Source
from components.ingest.sources.hashing import (
    Hash,
    Lister,
    hash_remote_objects,
    line,
    read_remote_text,
    size_and_time,
)
from components.ingest.sources.listing import (
    CsvRow,
    Listings,
    SourceError,
    is_uri,
    list_csv,
    read_local,
    read_uri,
)
from components.spec import DataConfig

MISSING_EXAMPLES = 3  # missing files the preflight names


class CsvKind(PathKind):
    scheme = "csv"
    example = "csv:/data/labels.csv"

    def host_paths(self, rest: str, data: DataConfig) -> list[str]:
        """The manifest and the folders of the local files it lists."""
        paths = super().host_paths(rest, data)
        if paths and os.path.isfile(rest):
            with contextlib.suppress(SourceError):
                rows = list_csv(rest, data)
                paths += {os.path.dirname(r.location) for r in rows if not is_uri(r.location)}
        return paths

    def open(self, rest: str, config: Any) -> Source:
        manifest = list_csv(rest, config)
        max_bytes = getattr(config, "max_file_bytes", None)

        def items() -> Iterator[Item]:
            for row in manifest:
                read = read_uri if is_uri(row.location) else read_local
                yield Item(
                    key=row.path,
                    label=row.label,
                    read=partial(read, row.location, max_bytes),
                    origin=row.location,
                    split=row.split,
                )

        return Source(items(), len(manifest))

    def listed_classes(
        self, rest: str, data: DataConfig, not_here: tuple[str, ...], listings: Listings
    ) -> set[str] | None:
        """The labels, once every local file the manifest lists exists."""
        if self.elsewhere(rest, not_here):
            return None
        rows = listings.csv(rest, data)
        local = [r for r in rows if not is_uri(r.location) and not r.location.startswith(not_here)]
        missing = [r for r in local if not os.path.lexists(r.location)]
        if missing:
            shown = "; ".join(f"line {r.line}: {r.path}" for r in missing[:MISSING_EXAMPLES])
            raise SourceError(
                f"csv:{rest} lists {len(missing)} file(s) that do not exist "
                f"({shown}); fix the paths (relative ones are read from the CSV's folder)"
            )
        return {r.label for r in rows}

    def snapshot(self, rest: str, context: SnapshotContext) -> int | None:
        """The manifest's rows plus the size and time of every file it lists (a manifest in a
        bucket: its text and the listed objects' sizes and generations)."""
        if rest.startswith("gs://"):
            return _remote_manifest(rest, context.data, context.digest, context.lister)
        rows = context.listings.csv(rest, context.data)
        return _listed_manifest(rows, context.digest, context.lister)


def _listed_manifest(rows: list[CsvRow], digest: Hash, lister: Lister) -> int:
    """A local manifest: its rows (what ingest reads) and each listed file's size and time."""
    uris = []
    for row in rows:
        digest.update(line("row", row.path, row.label, row.split or ""))
        if "://" in row.location:
            uris.append(row.location)
        else:
            digest.update(line(row.location, *size_and_time(row.location)))
    if uris:
        hash_remote_objects(uris, digest, lister)
    return 1 + len(rows)


def _remote_manifest(file: str, data: DataConfig, digest: Hash, lister: Lister) -> int:
    """A manifest in a bucket: its text and the listed objects' sizes and generations."""
    text = read_remote_text(file)
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
        hash_remote_objects(uris, digest, lister)
    return 1 + len(uris)
