"""Sharded TFRecord writer for the Dataset contract (components.common.dataset), without TensorFlow.

A TFRecord file is a sequence of records: uint64 length, masked CRC-32C of the length, the
bytes, masked CRC-32C of the bytes (little endian). Each record here is a serialized
`tf.train.Example`, encoded directly in protobuf wire format with its features in sorted
order, so the same examples give byte-identical shards. Writing them by hand keeps TensorFlow
(seconds to import, threads that rule out forking) out of the ingest step; the tests read the
shards back with TensorFlow's own parser.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import google_crc32c

from components.common.dataset import (
    FEATURE_FORMAT,
    FEATURE_IMAGE,
    FEATURE_KEY,
    FEATURE_LABEL,
    shard_name,
)

_MASK_DELTA = 0xA282EAD8


def serialize_example(image: bytes, image_format: str, label: int, key: str) -> bytes:
    """A serialized tf.train.Example with the contract's four features."""
    features = {
        FEATURE_IMAGE: _bytes_feature(image),
        FEATURE_FORMAT: _bytes_feature(image_format.encode()),
        FEATURE_LABEL: _int64_feature(label),
        FEATURE_KEY: _bytes_feature(key.encode()),
    }
    # Features: map<string, Feature> feature = 1; each entry is {key = 1, value = 2}.
    entries = b"".join(
        _field(_TAG_1, _field(_TAG_1, name.encode()) + _field(_TAG_2, feature))
        for name, feature in sorted(features.items())
    )
    return _field(_TAG_1, entries)  # Example: Features features = 1


def tfrecord(data: bytes) -> bytes:
    """One record of a TFRecord file."""
    length = struct.pack("<Q", len(data))
    return b"".join(
        (length, struct.pack("<I", _masked_crc(length)), data, struct.pack("<I", _masked_crc(data)))
    )


# Tags of length-delimited fields (wire type 2) numbered 1, 2 and 3.
_TAG_1, _TAG_2, _TAG_3 = b"\x0a", b"\x12", b"\x1a"


def _bytes_feature(value: bytes) -> bytes:
    return _field(_TAG_1, _field(_TAG_1, value))  # Feature.bytes_list = 1 -> BytesList.value = 1


def _int64_feature(value: int) -> bytes:
    return _field(_TAG_3, _field(_TAG_1, _varint(value)))  # Feature.int64_list = 3 -> packed value


def _field(tag: bytes, payload: bytes) -> bytes:
    return b"".join((tag, _varint(len(payload)), payload))


def _varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return bytes((value,))
    value &= (1 << 64) - 1  # negative int64 values take ten bytes, as two's complement
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


class ShardedWriter:
    """Writes `total` records of one split into ceil(total / shard_size) shards, in order."""

    def __init__(self, output_dir: str | Path, split: str, total: int, shard_size: int):
        self.output_dir = Path(output_dir)
        self.split = split
        self.shard_size = shard_size
        self.count = max(1, math.ceil(total / shard_size))
        self.written = 0
        self._file: BinaryIO | None = None
        self._shard = -1

    def write(self, record: bytes) -> None:
        shard = min(self.written // self.shard_size, self.count - 1)
        if shard != self._shard:
            self.close()
            self._file = (self.output_dir / shard_name(self.split, shard, self.count)).open("wb")
            self._shard = shard
        assert self._file is not None
        self._file.write(tfrecord(record))
        self.written += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> ShardedWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
