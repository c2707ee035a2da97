"""The ingest step: read a source, validate every image, split, write the Dataset artifact."""

from __future__ import annotations

import csv
import hashlib
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from components.common.dataset import INFO_FILE, SPLITS
from components.common.files import write_json
from components.common.progress import progress
from components.ingest.sources import Item, SourceError, open_source
from components.ingest.split import assign_splits, key_hash
from components.ingest.tfrecords import ShardedWriter, serialize_example
from components.ingest.validate import check_image
from pipelines.config import DataConfig

QUARANTINE_FIELDS = ("key", "source", "reason")


class IngestError(ValueError):
    """The data cannot make a usable dataset; the message names what to fix."""


def ingest(data: DataConfig | dict[str, Any], output_dir: str | Path, quarantine_csv: str | Path) -> dict[str, Any]:
    """Build the Dataset artifact in `output_dir`; return its dataset_info."""
    data = data if isinstance(data, DataConfig) else DataConfig.model_validate(data)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    items, excluded = _select(data)
    class_names = _class_names(data, items)
    _check_class_sizes(data, items)
    splits = assign_splits(((i.key, i.label, i.split) for i in items), data.splits.validation, data.splits.test)

    by_split: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_split[splits[item.key]].append(item)

    label_index = {name: index for index, name in enumerate(class_names)}
    counts: dict[str, Counter[str]] = {split: Counter() for split in SPLITS}
    reasons: Counter[str] = Counter()
    fingerprint = hashlib.sha256()
    sizes: list[tuple[int, int]] = []
    converted = 0
    quarantine_path = Path(quarantine_csv)
    quarantine_path.parent.mkdir(parents=True, exist_ok=True)
    with quarantine_path.open("w", newline="") as quarantine_file:
        quarantine = csv.writer(quarantine_file)
        quarantine.writerow(QUARANTINE_FIELDS)
        for split in SPLITS:
            # Hash order: deterministic and already shuffled across classes.
            members = sorted(by_split.get(split, []), key=lambda i: key_hash(i.key))
            with ShardedWriter(output_dir, split, len(members), data.shard_size) as writer:
                for item in progress(members, len(members), f"ingest {split}"):
                    try:
                        raw = item.read()
                    except OSError as exc:
                        quarantine.writerow((item.key, item.origin, f"unreadable ({exc})"))
                        reasons["unreadable"] += 1
                        continue
                    checked = check_image(raw, data.channels, data.min_image_side)
                    if checked.data is None:
                        quarantine.writerow((item.key, item.origin, checked.reason))
                        reasons[str(checked.reason).split(" (")[0]] += 1
                        continue
                    converted += checked.converted
                    label = label_index[item.label]
                    writer.write(serialize_example(checked.data, checked.format, label, item.key))
                    fingerprint.update(f"{split}\0{item.key}\0{label}\0".encode())
                    fingerprint.update(hashlib.sha256(checked.data).digest())
                    counts[split][item.label] += 1
                    if len(sizes) < 20000:
                        sizes.append((checked.width, checked.height))

    if sum(counts["train"].values()) == 0:
        raise IngestError("no valid training images: every item was quarantined; see the quarantine CSV")
    seen = len(items)
    kept = sum(sum(c.values()) for c in counts.values())
    info = {
        "source": data.source,
        "class_names": class_names,
        "num_classes": len(class_names),
        "image_size": list(data.image_size),
        "channels": data.channels,
        "counts": {split: {name: counts[split][name] for name in class_names} for split in SPLITS},
        "num_examples": {split: sum(counts[split].values()) for split in SPLITS},
        "seen": seen,
        "kept": kept,
        "quarantined": seen - kept,
        "quarantine_reasons": dict(reasons),
        "excluded_by_config": excluded,
        "converted": converted,
        "image_sizes": _size_stats(sizes),
        "fingerprint": fingerprint.hexdigest(),
        "seconds": round(time.monotonic() - started, 2),
    }
    write_json(output_dir / INFO_FILE, info)
    return info


def _select(data: DataConfig) -> tuple[list[Item], dict[str, int]]:
    """All items after label_map and the class subset; counts of what the config excluded."""
    sources = [data.source, *data.extra_train_sources]
    items: list[Item] = []
    excluded: Counter[str] = Counter()
    keys: set[str] = set()
    for index, source in enumerate(sources):
        try:
            for item in open_source(source, data):
                label = data.label_map.get(item.label) if data.label_map else item.label
                if label is None:
                    excluded[f"label '{item.label}' not in label_map"] += 1
                    continue
                if data.classes is not None and label not in data.classes:
                    excluded[f"class '{label}' not in classes"] += 1
                    continue
                split = item.split if index == 0 else "train"
                key = item.key if index == 0 else f"extra{index}/{item.key}"
                if key in keys:
                    raise IngestError(f"{source}: two items share the key '{key}'")
                keys.add(key)
                items.append(Item(key, label, item.read, item.origin, split))
        except SourceError as exc:
            raise IngestError(str(exc)) from None
    if not items:
        raise IngestError(f"{data.source} yielded no images (after label_map/classes)")
    return items, dict(excluded)


def _class_names(data: DataConfig, items: list[Item]) -> list[str]:
    if data.classes is not None:
        return list(data.classes)
    found = {item.label for item in items}
    if all(name.lstrip("-").isdigit() for name in found):
        return sorted(found, key=int)
    return sorted(found)


def _check_class_sizes(data: DataConfig, items: list[Item]) -> None:
    sizes = Counter(item.label for item in items)
    if data.classes is not None:
        missing = [name for name in data.classes if sizes[name] == 0]
        if missing:
            raise IngestError(f"classes {missing} have no images in {data.source}")
    small = {name: n for name, n in sorted(sizes.items()) if n < data.min_images_per_class}
    if small:
        listed = ", ".join(f"'{name}' ({n})" for name, n in small.items())
        raise IngestError(
            f"classes below data.min_images_per_class={data.min_images_per_class}: {listed}; "
            "add images, drop the class with data.classes, or lower the minimum"
        )
    if len(sizes) < 2:
        raise IngestError(f"{data.source} has {len(sizes)} class(es); a classifier needs at least 2")


def _size_stats(sizes: list[tuple[int, int]]) -> dict[str, Any]:
    if not sizes:
        return {}
    widths = sorted(w for w, _ in sizes)
    heights = sorted(h for _, h in sizes)
    return {
        "sampled": len(sizes),
        "width": {"min": widths[0], "median": widths[len(widths) // 2], "max": widths[-1]},
        "height": {"min": heights[0], "median": heights[len(heights) // 2], "max": heights[-1]},
    }
