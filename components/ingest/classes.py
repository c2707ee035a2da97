"""How many classes ingest will produce, when that is knowable before it runs.

Known without decoding an image: `data.classes`; else what each source's kind
(components/ingest/sources/) knows: the embedded digits; what the data preflight lists of a
local folder, CSV or npz; a tfds builder's label feature (from the builder's info, no
download). After `data.label_map`, the count is that of the distinct targets of the source
classes it maps. Anything else (gs://, the Hub, a path of the machine the steps run on, a
source the preflight rejects) gives None: the count is then known only after ingest.
"""

from __future__ import annotations

from components.ingest.sources import kind_of
from components.ingest.sources.listing import Listings, SourceError
from components.spec import DataConfig


def ordered_class_names(data: DataConfig, found: set[str]) -> list[str]:
    """The class names of the Dataset, in label order: `data.classes` as listed, else sorted
    (by number when every name is one)."""
    if data.classes is not None:
        return list(data.classes)
    if all(name.lstrip("-").isdigit() for name in found):
        return sorted(found, key=int)
    return sorted(found)


def known_class_count(
    data: DataConfig, not_here: tuple[str, ...] = (), listings: Listings | None = None
) -> int | None:
    """The number of classes ingest will find, or None when only ingest can tell.

    `listings`: the sources' listings the data preflight made (each source is listed once).
    """
    names = known_class_names(data, not_here, listings)
    return None if names is None else len(names)


def known_class_names(
    data: DataConfig, not_here: tuple[str, ...] = (), listings: Listings | None = None
) -> list[str] | None:
    """The class names ingest will write (in label order), or None when only ingest can tell."""
    if data.classes is not None:
        return list(data.classes)
    found: set[str] = set()
    for source in [data.source, *data.extra_train_sources]:
        names = source_class_names(source, data, not_here, listings)
        if names is None:
            return None
        found.update(names)
    if data.label_map is not None:
        mapped = {data.label_map[name] for name in found if name in data.label_map}
        if not mapped:
            # The listed names are not the ones label_map speaks of (a builder whose info
            # names its classes by number, say): only ingest can tell.
            return None
        found = mapped
    return ordered_class_names(data, found)


def source_class_names(
    source: str,
    data: DataConfig,
    not_here: tuple[str, ...] = (),
    listings: Listings | None = None,
) -> set[str] | None:
    """The source's own class names (before label_map), or None when not cheaply knowable."""
    try:
        kind, rest = kind_of(source)
    except SourceError:
        return None  # the experiment's validation says why
    return kind.class_names(rest, data, not_here, listings if listings is not None else Listings())
