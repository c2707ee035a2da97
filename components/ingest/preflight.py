"""The data preflight: what can be known about the sources without decoding an image.

Run by the command line before anything is compiled or submitted, so that a wrong path, a
manifest without its label column or a class the source lacks is a config error (exit 2)
instead of a failed ingest step. Each source's kind (components/ingest/sources/) lists it with
the code ingest lists it with (`list_folder`, `list_csv` in listing.py), so the two never
disagree about what a source holds.

What is not checked here, and is left to ingest: remote sources whose listing needs the network
(`gs://` folders and manifests, `tfds:` builders, Hub datasets), the images themselves, and
paths that only exist where the steps run (`not_here`, e.g. a volume mounted in the cluster).
"""

from __future__ import annotations

from collections.abc import Sequence

from components.ingest.sources import kind_of
from components.ingest.sources.listing import Listings, SourceError
from components.spec import DataConfig


def preflight(
    data: DataConfig, not_here: Sequence[str] = (), listings: Listings | None = None
) -> list[str]:
    """Every problem of `data`'s sources that needs no image decoding, as messages to print.

    Args:
        data: The experiment's data section (relative paths already resolved).
        not_here: Path prefixes that exist only where the steps run; paths below them are
            not checked.
        listings: The sources' listings, shared with the class count and the data snapshot.
    """
    listings = listings if listings is not None else Listings()
    problems = []
    found: dict[str, set[str] | None] = {}
    fields = ["data.source"] + [
        f"data.extra_train_sources.{i}" for i in range(len(data.extra_train_sources))
    ]
    for field_name, source in zip(fields, [data.source, *data.extra_train_sources], strict=True):
        try:
            kind, rest = kind_of(source)
            found[source] = kind.listed_classes(rest, data, tuple(not_here), listings)
        except SourceError as exc:
            problems.append(f"{field_name}: {exc}")
    if not problems:
        problems.extend(_class_problems(data, found))
    return problems


def _class_problems(data: DataConfig, found: dict[str, set[str] | None]) -> list[str]:
    """data.classes and data.label_map against what the sources hold; at least 2 classes.

    `found`: each source's class names, None for a source that could not be listed here.
    """
    listed = [names for names in found.values() if names is not None]
    if len(listed) < len(found):
        return []  # a source that could not be listed may hold any class
    source_classes = set().union(*listed)
    shown = f"{data.source}" + (" and data.extra_train_sources" if data.extra_train_sources else "")
    problems = []
    if data.label_map:
        unknown = sorted(set(data.label_map) - source_classes)
        if unknown:
            problems.append(
                f"data.label_map names source classes that {shown} does not have: "
                f"{_names(unknown)}; its classes: {_names(sorted(source_classes))}"
            )
        targets = {data.label_map[name] for name in source_classes if name in data.label_map}
    else:
        targets = source_classes
    if data.classes is not None:
        unknown = sorted(set(data.classes) - targets)
        if unknown:
            after = " after data.label_map" if data.label_map else ""
            problems.append(
                f"data.classes names classes that {shown} does not have{after}: "
                f"{_names(unknown)}; available: {_names(sorted(targets))}"
            )
        targets &= set(data.classes)
    if not problems and len(targets) < 2:
        kept = f" ({_names(sorted(targets))})" if targets else ""
        problems.append(
            f"data.source: {shown} has {len(targets)} class(es){kept} after data.classes and "
            "data.label_map; a classifier needs at least 2: add class folders or labels"
        )
    return problems


def _names(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
