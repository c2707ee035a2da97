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
from components.common.folds import FOLD_SPLITS, held_out_keys
from components.spec import Fold


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
    examples: int | None = None,
    fold: Fold | None = None,
) -> Any:
    """Batches of (image, label) (or (image, label, key)) from one split; with a `fold`, from
    that fold's `split` part of train + validation (components/common/folds.py).

    `examples` (the split's size from dataset_info.json, or the fold part's) gives the dataset
    a known number of batches, so Keras sizes its epochs from it instead of running the first
    one dry.
    """
    import tensorflow as tf

    parts = FOLD_SPLITS if fold is not None else (split,)
    files = [path for part in parts for path in shard_files(dataset_dir, part)]
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
    dataset = dataset.map(parse_example, num_parallel_calls=autotune, deterministic=True)
    if fold is not None:
        inside = fold_lookup(dataset_dir, fold, split)
        dataset = dataset.filter(lambda example: inside(example[FEATURE_KEY]))

    def _parse(example: Any) -> Any:
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
    dataset = dataset.batch(batch_size)
    if examples is not None:
        batches = -(-examples // batch_size)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(batches))
    return dataset.prefetch(autotune)


def fold_lookup(dataset_dir: str | Path, fold: Fold, split: str) -> Any:
    """key -> whether the image is in the fold's `split` part, for tf.data: a lookup in a
    table of the fold's keys (`components.common.folds.held_out_keys`), so tf.data and the
    pure-Python reader agree by construction."""
    import tensorflow as tf

    if split not in FOLD_SPLITS:
        raise ValueError(f"a fold has a train and a validation part, not {split!r}")
    held_out, _ = held_out_keys(dataset_dir, fold)
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(held_out, tf.string, shape=[len(held_out)]),
            tf.ones([len(held_out)], tf.bool),
        ),
        default_value=False,
    )
    if split == "validation":
        return table.lookup
    return lambda key: tf.logical_not(table.lookup(key))
