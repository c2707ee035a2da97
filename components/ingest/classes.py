"""How many classes ingest will produce, when that is knowable before it runs.

Known without decoding an image: `data.classes`; the embedded digits; a local folder's class
subfolders; a local CSV's label column; an npz's `class_names` (or its distinct `y`); a tfds
builder's label feature (from the builder's info, no download). After `data.label_map`, the
count is that of the distinct targets of the source classes it maps. Anything else (gs://, the
Hub, a missing path) gives None: the count is then known only after ingest.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from components.spec import DataConfig

DIGITS = tuple(str(d) for d in range(10))


def known_class_count(data: DataConfig) -> int | None:
    """The number of classes ingest will find, or None when only ingest can tell."""
    if data.classes is not None:
        return len(data.classes)
    found: set[str] = set()
    for source in [data.source, *data.extra_train_sources]:
        names = source_class_names(source, data)
        if names is None:
            return None
        found.update(names)
    if data.label_map is not None:
        found = {data.label_map[name] for name in found if name in data.label_map}
    return len(found)


def source_class_names(source: str, data: DataConfig) -> set[str] | None:
    """The source's own class names (before label_map), or None when not cheaply knowable."""
    scheme, _, rest = source.partition(":")
    try:
        if scheme == "sklearn":
            return set(DIGITS)
        if scheme == "folder" and "://" not in rest:
            return _folder(rest)
        if scheme == "csv" and "://" not in rest:
            return _csv(rest, data)
        if scheme == "npz":
            return _npz(rest)
        if scheme == "tfds":
            return _tfds(rest, data)
    except (OSError, ValueError, KeyError):
        return None  # unreadable here: preflight or ingest reports why
    return None


def _subfolders(path: str) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def _folder(root: str) -> set[str] | None:
    if not os.path.isdir(root):
        return None
    names = _subfolders(root)
    # ingest enters a lone wrapper folder (Kaggle's PetImages/{Cat,Dog})
    while len(names) == 1 and _subfolders(os.path.join(root, names[0])):
        root = os.path.join(root, names[0])
        names = _subfolders(root)
    return set(names)


def _csv(file: str, data: DataConfig) -> set[str] | None:
    with open(file, encoding="utf-8-sig", newline="") as handle:
        rows = csv.DictReader(handle)
        if data.label_column not in (rows.fieldnames or []):
            return None
        return {label for row in rows if (label := (row[data.label_column] or "").strip())}


def _npz(file: str) -> set[str] | None:
    with np.load(file, allow_pickle=False) as archive:
        if "class_names" in archive.files:
            return {str(name) for name in archive["class_names"]}
        if "y" not in archive.files:
            return None
        labels = [archive["y"]] + ([archive["y_test"]] if "y_test" in archive.files else [])
        return {str(value.item()) for value in np.unique(np.concatenate(labels))}


def _tfds(spec: str, data: DataConfig) -> set[str] | None:
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        return None
    name, _, config = spec.partition(":")
    try:
        builder = tfds.builder(f"{name}/{config}" if config else name)
    except Exception:  # unknown name: preflight or ingest says so
        return None
    features = builder.info.features
    if data.label_column not in features:  # FeaturesDict has no .get
        return None
    label = features[data.label_column]
    if not isinstance(label, tfds.features.ClassLabel):
        return None
    return {str(n) for n in label.names}
