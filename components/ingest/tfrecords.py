"""Sharded TFRecord writer for the Dataset contract (components.common.dataset)."""

from __future__ import annotations

import math
from pathlib import Path
from types import TracebackType

from components.common.dataset import (
    FEATURE_FORMAT,
    FEATURE_IMAGE,
    FEATURE_KEY,
    FEATURE_LABEL,
    shard_name,
)


def serialize_example(image: bytes, image_format: str, label: int, key: str) -> bytes:
    import tensorflow as tf

    def _bytes(value: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    features = {
        FEATURE_IMAGE: _bytes(image),
        FEATURE_FORMAT: _bytes(image_format.encode()),
        FEATURE_LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        FEATURE_KEY: _bytes(key.encode()),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


class ShardedWriter:
    """Writes `total` records of one split into ceil(total / shard_size) shards, in order."""

    def __init__(self, output_dir: str | Path, split: str, total: int, shard_size: int):
        self.output_dir = Path(output_dir)
        self.split = split
        self.shard_size = shard_size
        self.count = max(1, math.ceil(total / shard_size))
        self.written = 0
        self._writer = None
        self._shard = -1

    def write(self, record: bytes) -> None:
        import tensorflow as tf

        shard = min(self.written // self.shard_size, self.count - 1)
        if shard != self._shard:
            if self._writer is not None:
                self._writer.close()
            path = self.output_dir / shard_name(self.split, shard, self.count)
            self._writer = tf.io.TFRecordWriter(str(path))
            self._shard = shard
        self._writer.write(record)
        self.written += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> ShardedWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
