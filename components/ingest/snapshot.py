"""The data snapshot: a cheap hash of what a source holds, taken before the pipeline compiles.

The snapshot is an input of the ingest step, so the pipeline cache re-runs ingest (and all that
follows) when the data changes and reuses it when nothing did. It never decodes an image: each
source's kind (components/ingest/sources/) hashes what it holds (a folder's listing with sizes
and times, a manifest's rows, an archive's content, a builder's version, a Hub revision, the
version of the library that embeds the data). `data.extra_train_sources` are part of the
snapshot too.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

from components.ingest.sources import kind_of
from components.ingest.sources.base import SnapshotContext
from components.ingest.sources.hashing import Lister, SnapshotError, gcs_listing
from components.ingest.sources.listing import Listings, SourceError
from components.spec import DataConfig

# The part of the hex digest shown on the console; the whole digest is the pipeline parameter.
SHOWN_DIGITS = 6


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
    buckets, a cluster's data volume). A source a kind can see from here another way (a folder
    under `/gcs/BUCKET/` is listed as `gs://BUCKET/`) is snapshotted that way; other such paths
    cannot be looked at, which the snapshot's notes say.
    `listings`: the local sources' listings the data preflight made, so nothing is listed twice.
    """
    started = time.perf_counter()
    digest = hashlib.sha256()
    context = SnapshotContext(
        data=data,
        digest=digest,
        lister=lister or gcs_listing,
        listings=listings if listings is not None else Listings(),
        notes=[],
    )
    total: int | None = None
    for source in [data.source, *data.extra_train_sources]:
        digest.update(f"source\0{source}\n".encode())
        try:
            kind, rest = kind_of(source)
            visible = kind.visible(rest, not_here)
            if visible is None:
                context.notes.append(
                    f"{source} exists only where the steps run: the cache sees changes to the "
                    "config, not to those files (run with --no-cache after changing them)"
                )
                continue
            files = kind.snapshot(visible, context)
        except SourceError as exc:  # the listing's own message says what to fix
            raise SnapshotError(str(exc)) from None
        if files is not None:
            total = (total or 0) + files
    return Snapshot(digest.hexdigest(), total, time.perf_counter() - started, context.notes)
