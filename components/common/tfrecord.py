"""A pure-Python reader of the Dataset artifact's TFRecords (no TensorFlow import).

TensorFlow is seconds to import in every DDP process, and its runtime threads make forking
DataLoader workers unsafe, so the transformers trainer reads shards with this small TFRecord /
tf.train.Example parser. `components.common.dataset` holds the contract (feature names, shard
names) and the tf.data-side parser.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from components.common.dataset import (
    FEATURE_FORMAT,
    FEATURE_IMAGE,
    FEATURE_KEY,
    FEATURE_LABEL,
    shard_files,
)


def read_split(
    dataset_dir: str | Path,
    split: str | tuple[str, ...],
    keep: Callable[[bytes], bool] | None = None,
) -> tuple[list[bytes], np.ndarray]:
    """Encoded images and labels of one split (or of several, one after the other), in file
    order; with `keep`, only the records whose key it keeps."""
    encoded, labels = [], []
    splits = (split,) if isinstance(split, str) else split
    for path in [path for part in splits for path in shard_files(dataset_dir, part)]:
        for record in read_records(path):
            features = parse_example(record)
            try:
                if keep is not None and not keep(features[FEATURE_KEY][0]):
                    continue
                encoded.append(features[FEATURE_IMAGE][0])
                labels.append(features[FEATURE_LABEL][0])
            except (KeyError, IndexError):
                raise ValueError(
                    f"{path}: a record lacks {FEATURE_IMAGE}, {FEATURE_LABEL} or {FEATURE_KEY}; "
                    "it is not a Dataset written by the ingest step (re-run ingest)"
                ) from None
    return encoded, np.asarray(labels, dtype=np.int64)


def read_keys(dataset_dir: str | Path, split: str) -> Iterator[bytes]:
    """The `key` of every record of one split, in file order."""
    for path in shard_files(dataset_dir, split):
        for record in read_records(path):
            keys = parse_example(record, only=FEATURE_KEY).get(FEATURE_KEY)
            if not keys:
                raise ValueError(
                    f"{path}: a record lacks {FEATURE_KEY}; it is not a Dataset written by the "
                    "ingest step (re-run ingest)"
                )
            yield keys[0]


def read_examples(dataset_dir: str | Path, split: str) -> Iterator[dict[str, Any]]:
    """`{key, label, image (bytes), format}` of each example of one split, in file order (the
    TensorFlow-free counterpart of `components.common.dataset.iterate_examples`)."""
    for path in shard_files(dataset_dir, split):
        for record in read_records(path):
            features = parse_example(record)
            try:
                yield {
                    "key": features[FEATURE_KEY][0].decode(),
                    "label": int(features[FEATURE_LABEL][0]),
                    "image": features[FEATURE_IMAGE][0],
                    "format": b"".join(features.get(FEATURE_FORMAT, [])[:1]).decode(),
                }
            except (KeyError, IndexError):
                raise ValueError(
                    f"{path}: a record lacks {FEATURE_KEY}, {FEATURE_IMAGE} or {FEATURE_LABEL}; "
                    "it is not a Dataset written by the ingest step (re-run ingest)"
                ) from None


def read_records(path: str | Path) -> Iterator[bytes]:
    """The records of a TFRecord file: uint64 length, CRC, bytes, CRC (CRCs not checked; a
    damaged record fails to parse or decode)."""
    with open(path, "rb") as handle:
        while header := handle.read(12):
            (length,) = struct.unpack("<Q", header[:8]) if len(header) == 12 else (-1,)
            data = handle.read(length) if length >= 0 else b""
            if length < 0 or len(data) < length or len(handle.read(4)) < 4:
                raise ValueError(f"{path} ends inside a record; the shard is truncated")
            yield data


def parse_example(data: bytes, only: str | None = None) -> dict[str, list[Any]]:
    """A serialized tf.train.Example -> {feature name: list of bytes or ints}; with `only`,
    that one feature (the others' values are not decoded)."""
    features: dict[str, list[Any]] = {}
    for number, block in _fields(data):
        if number != 1 or not isinstance(block, bytes):  # Example.features
            continue
        for entry_number, entry in _fields(block):  # Features: map<string, Feature> = 1
            if entry_number != 1 or not isinstance(entry, bytes):
                continue
            name, feature = "", b""
            for part_number, part in _fields(entry):
                if part_number == 1 and isinstance(part, bytes):
                    name = part.decode()
                elif part_number == 2 and isinstance(part, bytes):
                    feature = part
            if only is None or name == only:
                features[name] = _feature_values(feature)
    return features


def _feature_values(feature: bytes) -> list[Any]:
    values: list[Any] = []
    for kind, payload in _fields(feature):
        if kind == 1 and isinstance(payload, bytes):  # BytesList: repeated bytes value = 1
            values += [v for n, v in _fields(payload) if n == 1 and isinstance(v, bytes)]
        elif kind == 3 and isinstance(payload, bytes):  # Int64List: repeated int64 value = 1
            for number, value in _fields(payload):
                if number != 1:
                    continue
                if isinstance(value, bytes):  # packed
                    position = 0
                    while position < len(value):
                        item, position = _varint(value, position)
                        values.append(_int64(item))
                else:
                    values.append(_int64(value))
    return values


def _int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: ints for varint and fixed-width fields,
    bytes for length-delimited ones."""
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, position = _varint(data, position)
            yield number, value
        elif wire == 2:
            length, position = _varint(data, position)
            yield number, data[position : position + length]
            position += length
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            yield number, int.from_bytes(data[position : position + width], "little")
            position += width
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} in a TFRecord example")
