"""tf.data input pipelines over the Dataset artifact's TFRecords (Keras training, evaluation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components.common.dataset import (
    FEATURE_IMAGE,
    FEATURE_KEY,
    FEATURE_LABEL,
    parse_example,
    shard_files,
)


def decode_and_resize(encoded: Any, input_size: tuple[int, int], channels: int) -> Any:
    """Encoded bytes -> float32 [0, 255] image of `input_size` (upsampling small images)."""
    import tensorflow as tf

    image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
    image.set_shape([None, None, channels])
    image = tf.image.resize(image, input_size, method="bilinear")
    return tf.cast(image, tf.float32)


def make_dataset(
    dataset_dir: str | Path,
    split: str,
    input_size: tuple[int, int],
    channels: int,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    with_keys: bool = False,
    cache: bool = True,
) -> Any:
    """Batches of (image, label) (or (image, label, key)) from one split."""
    import tensorflow as tf

    files = shard_files(dataset_dir, split)
    if not files:
        raise FileNotFoundError(f"no {split} shards in {dataset_dir}")
    autotune = tf.data.AUTOTUNE
    dataset = tf.data.Dataset.from_tensor_slices(files)
    dataset = dataset.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(len(files), 8),
        num_parallel_calls=autotune,
        deterministic=True,
    )

    def _parse(record: Any) -> Any:
        example = parse_example(record)
        image = decode_and_resize(example[FEATURE_IMAGE], input_size, channels)
        label = tf.cast(example[FEATURE_LABEL], tf.int32)
        if with_keys:
            return image, label, example[FEATURE_KEY]
        return image, label

    dataset = dataset.map(_parse, num_parallel_calls=autotune, deterministic=True)
    if cache:
        dataset = dataset.cache()
    if shuffle:
        dataset = dataset.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(autotune)
