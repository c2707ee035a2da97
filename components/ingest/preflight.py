"""The data preflight: what can be known about the sources without decoding an image.

Run by the command line before anything is compiled or submitted, so that a wrong path, a
manifest without its label column or a class the source lacks is a config error (exit 2)
instead of a failed ingest step. It lists the sources with the code ingest lists them with
(`list_folder`, `list_csv` in listing.py), so the two never disagree about what a source holds.

What is not checked here, and is left to ingest: remote sources whose listing needs the network
(`gs://` folders and manifests, `tfds:` builders, Hub datasets), the images themselves, and
paths that only exist where the steps run (`not_here`, e.g. a volume mounted in the cluster).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence

import numpy as np

from components.ingest.listing import Listings, SourceError, display_name, is_uri
from components.spec import DataConfig

MISSING_EXAMPLES = 3


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
            found[source] = _classes_of(source, data, tuple(not_here), listings)
        except SourceError as exc:
            problems.append(f"{field_name}: {exc}")
    if not problems:
        problems.extend(_class_problems(data, found))
    return problems


def source_classes(
    source: str,
    data: DataConfig,
    not_here: tuple[str, ...] = (),
    listings: Listings | None = None,
) -> set[str] | None:
    """The class names `source` holds (before label_map), as far as they can be listed here
    without decoding an image; None when they cannot. Raises SourceError for a bad source."""
    return _classes_of(source, data, not_here, listings if listings is not None else Listings())


def _classes_of(
    source: str, data: DataConfig, not_here: tuple[str, ...], listings: Listings
) -> set[str] | None:
    """The source's class names (before label_map), or None when they cannot be listed here."""
    scheme, _, rest = source.partition(":")
    if scheme in ("folder", "csv", "npz") and (is_uri(rest) or rest.startswith(not_here)):
        return None  # a bucket (needs the network) or a path of the machine the steps run on
    if scheme == "folder":
        return {display_name(name) for name in listings.folder(rest, data).classes}
    if scheme == "csv":
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
    if scheme == "npz":
        return _npz_classes(rest)
    if scheme == "hf":
        _check_hf_path(rest)
    # sklearn: validated with the config. tfds and Hub datasets: their listing needs the
    # prepared data or the network; ingest checks them.
    return None


def _npz_classes(file: str) -> set[str] | None:
    if not os.path.isfile(file):
        what = "is a folder, not an .npz file" if os.path.isdir(file) else "does not exist"
        raise SourceError(f"npz:{file} {what}; give the archive's path")
    if not zipfile.is_zipfile(file):
        raise SourceError(
            f"npz:{file} is not an .npz archive (not a zip file); "
            "save it with np.savez(path, x=images, y=labels)"
        )
    try:
        with np.load(file, allow_pickle=False) as archive:
            names = set(archive.files)
            if not {"x", "y"} <= names:
                raise SourceError(
                    f"npz:{file} must hold arrays 'x' and 'y'; it has "
                    f"{sorted(names)}; save it with np.savez(path, x=images, y=labels)"
                )
            if "class_names" in names:
                return {str(c) for c in archive["class_names"]}
            labels = [archive["y"]] + ([archive["y_test"]] if "y_test" in names else [])
            return {str(v.item()) for y in labels for v in np.unique(y)}
    except SourceError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise SourceError(
            f"npz:{file} is not a readable .npz archive ({type(exc).__name__}: "
            f"{str(exc)[:200]}); save it with np.savez(path, x=images, y=labels)"
        ) from None


def _check_hf_path(spec: str) -> None:
    location = spec
    head, sep, tail = spec.rpartition(":")
    if sep and head and "/" not in tail and not os.path.exists(spec):
        location = head
    looks_local = location.startswith(("/", "./", "../", "~")) or os.sep in location[:1]
    if looks_local and not os.path.exists(os.path.expanduser(location)):
        raise SourceError(
            f"hf:{spec}: the folder {location} does not exist; give a folder "
            "written by save_to_disk, a folder of data files or a Hub dataset id (owner/name)"
        )


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
