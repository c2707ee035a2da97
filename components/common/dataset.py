"""The Dataset artifact contract shared by ingest (writer) and train/evaluate (readers).

A Dataset is a folder of sharded TFRecords `{split}-NNNNN-of-NNNNN.tfrecord` whose examples have
`image/encoded` (bytes), `image/format` (bytes), `label` (int64) and `key` (bytes: the stable id
of the source item), plus `dataset_info.json` (class names, counts, source, fingerprint).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

SPLITS = ("train", "validation", "test")
FEATURE_IMAGE = "image/encoded"
FEATURE_FORMAT = "image/format"
FEATURE_LABEL = "label"
FEATURE_KEY = "key"
# What `image/format` holds: the stored bytes are one of these, and decode as they are to
# dataset_info's `channels` (ingest converts everything else).
IMAGE_FORMATS = ("jpeg", "png")
# The Quarantine artifact: a CSV with this header, one row per rejected item; `reason` is
# "<code>: <detail>" (codes in components.ingest.validate.REASONS).
QUARANTINE_FIELDS = ("key", "source", "reason")


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def shard_files(dataset_dir: str | Path, split: str) -> list[str]:
    files = sorted(str(p) for p in Path(dataset_dir).glob(f"{split}-*-of-*.tfrecord"))
    return files


def parse_example(serialized: Any) -> dict[str, Any]:
    """Parse one serialized tf.train.Example of the contract (a tf.data map function)."""
    import tensorflow as tf

    spec = {
        FEATURE_IMAGE: tf.io.FixedLenFeature([], tf.string),
        FEATURE_FORMAT: tf.io.FixedLenFeature([], tf.string, default_value=b""),
        FEATURE_LABEL: tf.io.FixedLenFeature([], tf.int64),
        FEATURE_KEY: tf.io.FixedLenFeature([], tf.string),
    }
    return tf.io.parse_single_example(serialized, spec)


def iterate_examples(dataset_dir: str | Path, split: str) -> Iterator[dict[str, Any]]:
    """Yield `{key, label, image (bytes), format}` dicts of one split, in file order (eager)."""
    import tensorflow as tf

    files = shard_files(dataset_dir, split)
    for record in tf.data.TFRecordDataset(files):
        example = parse_example(record)
        yield {
            "key": example[FEATURE_KEY].numpy().decode(),
            "label": int(example[FEATURE_LABEL].numpy()),
            "image": example[FEATURE_IMAGE].numpy(),
            "format": example[FEATURE_FORMAT].numpy().decode(),
        }
