"""The ingest step: read the sources, validate every image, split, write the Dataset artifact.

Two passes, neither holding the images in memory:

1. decode: the sources are streamed through `check_in_order` (every core, input order). A
   rejected item goes to the Quarantine CSV at once; the bytes of a kept image are appended to
   a scratch file by the process that checked it, and only a small record (key, label, content
   hash, where its bytes are) stays in memory.
2. write: with every key and content hash known, exact duplicates and cross-split leakage are
   resolved, splits assigned, and each split is copied from the scratch files into sharded
   TFRecords in key-hash order (deterministic, and shuffled across classes).

The scratch files live in a temporary folder (TMPDIR): it needs about the dataset's size free.

Nothing is dropped silently: every seen item is either written or has a quarantine row, and
the step raises if those books do not balance. Items left out by `data.classes` or
`data.label_map` are not "seen"; they are counted in `excluded_by_config`. Entries of a folder
listing that are not items (hidden files, files beside the class folders, a second link to a
folder) are counted in `skipped`.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

from components.common.dataset import SPLITS
from components.common.progress import progress
from components.common.results import DatasetInfo, ImageSizes, SizeRange
from components.ingest.classes import ordered_class_names
from components.ingest.parallel import WorkerStartError, check_in_order
from components.ingest.quarantine import Quarantine
from components.ingest.report import ReportDetails, thumbnail_uri, write_data_report
from components.ingest.scratch import Kept, Scratch
from components.ingest.sources import open_source
from components.ingest.sources.base import Item, Source
from components.ingest.sources.listing import SourceError
from components.ingest.split import assign_splits, key_hash
from components.ingest.tfrecords import ShardedWriter, serialize_example
from components.spec import DataConfig

THUMBNAILS_PER_CLASS = 4
THUMBNAILS_TOTAL = 240
EXAMPLE_MISMATCHES = 50
# The format a file's extension promises (a Pillow format name, lower case).
SUFFIX_FORMATS = {
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".jpe": "jpeg",
    ".png": "png",
    ".gif": "gif",
    ".bmp": "bmp",
    ".webp": "webp",
    ".tif": "tiff",
    ".tiff": "tiff",
}
SAME_FORMAT = {"mpo": "jpeg"}  # a multi-picture JPEG is a JPEG file


class IngestError(ValueError):
    """The data cannot make a usable dataset; the message names what to fix."""


@dataclass
class _Tally:
    seen: int = 0
    converted: int = 0
    labels: set[str] = field(default_factory=set)
    conversions: Counter[str] = field(default_factory=Counter)
    source_formats: Counter[str] = field(default_factory=Counter)
    mismatches: int = 0
    mismatch_examples: list[tuple[str, str, str]] = field(default_factory=list)
    excluded: Counter[str] = field(default_factory=Counter)
    leakage: Counter[str] = field(default_factory=Counter)


def ingest(
    data: DataConfig | dict[str, Any],
    output_dir: str | Path,
    quarantine_csv: str | Path,
    report_html: str | Path | None = None,
    *,
    workers: int | None = None,
) -> dict[str, Any]:
    """Build the Dataset artifact in `output_dir`; return its dataset_info.json as a dict (the
    JSON of a `DatasetInfo`, what the ingest component hands on).

    Args:
        data: The experiment's data section.
        output_dir: Folder for the TFRecord shards and dataset_info.json.
        quarantine_csv: File for the Quarantine CSV (key, source, reason).
        report_html: File for the HTML data report, if wanted.
        workers: Processes that decode images (default: every core this process may use).
    """
    data = data if isinstance(data, DataConfig) else DataConfig.model_validate(data)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for stale in output_dir.glob("*-*-of-*.tfrecord"):
        stale.unlink()
    started = time.monotonic()
    tally = _Tally()
    sources = _open_sources(data)
    with (
        tempfile.TemporaryDirectory(prefix="ingest-") as scratch,
        Quarantine(Path(quarantine_csv)) as quarantine,
        Scratch(Path(scratch)) as spill,
    ):
        kept = _decode(data, sources, quarantine, spill, tally, workers)
        class_names = ordered_class_names(data, tally.labels)
        source_splits = sorted({r.group for r in kept} & {"validation", "test"})
        members = _resolve(data, kept, quarantine, spill, tally)
        del kept
        counts = {split: Counter(r.label for r in members[split]) for split in SPLITS}
        quarantine.flush()
        _check_classes(data, class_names, counts)
        fingerprint, thumbnails, shards = _write(data, output_dir, members, class_names, spill)
        quarantined = quarantine.count
        reasons = dict(quarantine.reasons)
        examples = {code: list(rows) for code, rows in quarantine.examples.items()}
    kept_count = sum(len(members[split]) for split in SPLITS)
    if kept_count + quarantined != tally.seen:
        raise IngestError(
            f"internal error: {tally.seen} items seen but {kept_count} kept + {quarantined} "
            "quarantined; the books do not balance (please report this with the quarantine CSV)"
        )
    widths = [r.width for split in SPLITS for r in members[split]]
    heights = [r.height for split in SPLITS for r in members[split]]
    info = DatasetInfo(
        source=data.source,
        extra_train_sources=list(data.extra_train_sources),
        source_splits=source_splits,
        class_names=class_names,
        num_classes=len(class_names),
        image_size=list(data.image_size),
        channels=data.channels,
        counts={split: {name: counts[split][name] for name in class_names} for split in SPLITS},
        num_examples={split: len(members[split]) for split in SPLITS},
        shards=shards,
        seen=tally.seen,
        kept=kept_count,
        quarantined=quarantined,
        quarantine_reasons=reasons,
        duplicates=reasons.get("duplicate", 0),
        leakage=dict(tally.leakage),
        excluded_by_config=dict(tally.excluded),
        skipped=dict(sum((source.skipped for _, source in sources), Counter())),
        converted=tally.converted,
        conversions=dict(tally.conversions),
        source_formats=dict(tally.source_formats),
        extension_mismatches=tally.mismatches,
        image_sizes=_size_stats(widths, heights),
        fingerprint=fingerprint,
        seconds=round(time.monotonic() - started, 2),
    )
    info.write(output_dir)
    if report_html is not None:
        details = ReportDetails(
            thumbnails=thumbnails,
            widths=widths,
            heights=heights,
            quarantine_examples=examples,
            extension_mismatches=tally.mismatch_examples,
        )
        write_data_report(info, report_html, details)
    return info.model_dump(mode="json")


def _open_sources(data: DataConfig) -> list[tuple[int, Source]]:
    """Open every source first, so a bad one fails before anything is decoded."""
    opened = []
    for index, source in enumerate([data.source, *data.extra_train_sources]):
        try:
            opened.append((index, open_source(source, data)))
        except SourceError as exc:
            raise IngestError(str(exc)) from None
    return opened


def _entries(
    data: DataConfig, sources: list[tuple[int, Source]], tally: _Tally
) -> Iterator[tuple[tuple[Item, str], Any]]:
    """`((item, group), read)` for each item the config keeps, lazily."""
    totals = [source.total for _, source in sources]
    stream: Iterator[tuple[int, Item]] = chain.from_iterable(
        ((index, item) for item in source) for index, source in sources
    )
    if all(total is not None for total in totals):
        stream = progress(stream, sum(t for t in totals if t is not None), "ingest: decode")
    keys: set[str] = set()
    try:
        for index, item in stream:
            if item.label is None:
                tally.excluded["unlabelled in the source"] += 1
                continue
            label = data.label_map.get(item.label) if data.label_map else item.label
            if label is None:
                tally.excluded[f"label '{item.label}' not in label_map"] += 1
                continue
            if data.classes is not None and label not in data.classes:
                tally.excluded[f"class '{label}' not in classes"] += 1
                continue
            if index == 0:
                key = item.key
                group = item.split if item.split in ("validation", "test") else "pool"
            else:
                key, group = f"extra{index}/{item.key}", "extra"
            if key in keys:
                source = data.source if index == 0 else data.extra_train_sources[index - 1]
                raise IngestError(f"{source}: two items share the key '{key}'; keys must be unique")
            keys.add(key)
            yield (Item(key, label, item.read, item.origin, item.split), group), item.read
    except SourceError as exc:
        raise IngestError(str(exc)) from None


def _decode(
    data: DataConfig,
    sources: list[tuple[int, Source]],
    quarantine: Quarantine,
    spill: Scratch,
    tally: _Tally,
    workers: int | None,
) -> list[Kept]:
    kept = []
    entries = _entries(data, sources, tally)
    checked_stream = check_in_order(
        entries, data.channels, data.min_image_side, workers, spill_dir=str(spill.folder)
    )
    for (item, group), checked, stored in _starting(checked_stream):
        tally.seen += 1
        assert item.label is not None
        tally.labels.add(item.label)
        if checked.reason is not None:
            quarantine.add(item.key, item.origin, checked.reason)
            continue
        assert stored is not None, "a kept image is stored by the process that checked it"
        origin = item.origin.encode("utf-8", "surrogateescape")
        kept.append(
            Kept(
                item.key,
                item.label,
                group,
                checked.digest,
                spill.add_origin(origin),
                len(origin),
                spill.file_index(stored.path),
                stored.offset,
                stored.length,
                checked.format,
                checked.width,
                checked.height,
            )
        )
        tally.converted += checked.converted
        tally.conversions.update(checked.conversions)
        tally.source_formats[checked.source_format] += 1
        suffix = posixpath.splitext(item.origin)[1].lower()
        promised = SUFFIX_FORMATS.get(suffix)
        real = SAME_FORMAT.get(checked.source_format, checked.source_format)
        if promised is not None and real != promised:
            tally.mismatches += 1
            if len(tally.mismatch_examples) < EXAMPLE_MISMATCHES:
                tally.mismatch_examples.append((item.key, suffix, checked.source_format))
    spill.flush()
    return kept


def _starting(stream: Iterator[Any]) -> Iterator[Any]:
    try:
        yield from stream
    except WorkerStartError as exc:
        raise IngestError(str(exc)) from None


def _resolve(
    data: DataConfig, kept: list[Kept], quarantine: Quarantine, spill: Scratch, tally: _Tally
) -> dict[str, list[Kept]]:
    """Drop duplicates and leakage, assign splits; each split's records in write order."""

    def order(record: Kept) -> str:
        return key_hash(record.key)

    # Exact copies within the pool go first, so that a pair cannot straddle train/validation.
    pool: list[Kept] = []
    first: dict[bytes, str] = {}
    for record in sorted((r for r in kept if r.group == "pool"), key=order):
        if record.digest in first:
            quarantine.add(
                record.key, spill.origin(record), f"duplicate: same image as {first[record.digest]}"
            )
        else:
            first[record.digest] = record.key
            pool.append(record)
    del first
    honoured = [r for r in kept if r.group in ("validation", "test")]
    assignment = assign_splits(
        chain(
            ((r.key, r.label, None) for r in pool), ((r.key, r.label, r.group) for r in honoured)
        ),
        data.splits.validation,
        data.splits.test,
    )
    by_split: dict[str, list[Kept]] = {split: [] for split in SPLITS}
    for record in chain(pool, honoured):
        by_split[assignment[record.key]].append(record)
    by_split["train"].extend(r for r in kept if r.group == "extra")
    # An image in test is removed from validation and train, one in validation from train.
    members: dict[str, list[Kept]] = {}
    owner: dict[bytes, Kept] = {}
    for split in ("test", "validation", "train"):
        members[split] = []
        for record in sorted(by_split[split], key=order):
            record.split = split
            previous = owner.get(record.digest)
            if previous is None:
                owner[record.digest] = record
                members[split].append(record)
            elif previous.split == split:
                quarantine.add(
                    record.key, spill.origin(record), f"duplicate: same image as {previous.key}"
                )
            else:
                quarantine.add(
                    record.key,
                    spill.origin(record),
                    f"leakage: same image as {previous.key} in {previous.split}; removed from {split}",
                )
                tally.leakage[f"{split}/{previous.split}"] += 1
    return members


def _write(
    data: DataConfig,
    output_dir: Path,
    members: dict[str, list[Kept]],
    class_names: list[str],
    spill: Scratch,
) -> tuple[str, dict[str, list[str]], dict[str, int]]:
    """Write the shards; return the content fingerprint, thumbnails per class, shards per split."""
    label_index = {name: index for index, name in enumerate(class_names)}
    header = json.dumps({"class_names": class_names, "channels": data.channels}, sort_keys=True)
    fingerprint = hashlib.sha256(header.encode())
    per_class = max(1, min(THUMBNAILS_PER_CLASS, THUMBNAILS_TOTAL // max(1, len(class_names))))
    thumbnails: dict[str, list[str]] = defaultdict(list)
    shards = {}
    for split in SPLITS:
        records = members[split]
        with ShardedWriter(output_dir, split, len(records), data.shard_size) as writer:
            for record in progress(records, len(records), f"ingest: write {split}"):
                image = spill.image(record)
                label = label_index[record.label]
                writer.write(serialize_example(image, record.format, label, record.key))
                fingerprint.update(f"{split}\0{record.key}\0{label}\0".encode())
                fingerprint.update(record.digest)
                if len(thumbnails[record.label]) < per_class:
                    thumbnails[record.label].append(thumbnail_uri(image))
        shards[split] = writer.count if records else 0
    return fingerprint.hexdigest(), dict(thumbnails), shards


def _check_classes(
    data: DataConfig, class_names: list[str], counts: dict[str, Counter[str]]
) -> None:
    sizes: Counter[str] = Counter()
    for split in SPLITS:
        sizes.update(counts[split])
    small = {name: sizes[name] for name in class_names if sizes[name] < data.min_images_per_class}
    if small:
        listed = ", ".join(f"'{name}' ({n})" for name, n in small.items())
        raise IngestError(
            f"classes below data.min_images_per_class={data.min_images_per_class} (valid images, "
            f"after quarantine, in {data.source}): {listed}; add images, drop the class with "
            "data.classes, or lower the minimum (the quarantine CSV lists what was rejected)"
        )
    if len(class_names) < 2:
        raise IngestError(
            f"{data.source} has {len(class_names)} class(es); a classifier needs at least 2"
        )
    if not counts["train"]:
        raise IngestError(
            "no valid training images: every training item was quarantined or leaked into an "
            "evaluation split; see the quarantine CSV"
        )


def _size_stats(widths: list[int], heights: list[int]) -> ImageSizes | None:
    if not widths:
        return None
    w, h = sorted(widths), sorted(heights)
    return ImageSizes(
        sampled=len(w),
        width=SizeRange(min=w[0], median=w[len(w) // 2], max=w[-1]),
        height=SizeRange(min=h[0], median=h[len(h) // 2], max=h[-1]),
    )
