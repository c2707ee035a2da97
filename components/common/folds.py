"""K-fold assignment of a Dataset's images, for ranking search trials on small data.

An image's fold is the SHA-256 of its stable `key` (the Dataset contract's id of the source
item, salted so that folds do not follow the key-hash order ingest splits by) mod K, so it
depends on nothing but the key: not on the shard, the order of the records or the framework.
Both trainers ask this module: the transformers trainer's pure-Python reader filters with
`in_part`, and the Keras trainer's tf.data input looks each record's key up in the set of the
fold's keys (`held_out_keys`), read once from the shards.

With a fold, the trainers' "train" and "validation" name the fold's two parts of train +
validation (`FOLD_SPLITS`): training on every image outside the fold, validating on the fold's
images. The test split is never read.
"""

from __future__ import annotations

import functools
import hashlib
from functools import partial
from pathlib import Path

import numpy as np

from components.common.tfrecord import read_keys, read_split
from components.spec import Fold

# The splits a K-fold ranking divides; the test split stays out of every fold.
FOLD_SPLITS = ("train", "validation")
# Prefixed to the key before hashing; changing it moves every image to another fold.
FOLD_SALT = b"search.folds:"


def fold_of(key: str | bytes, count: int) -> int:
    """The fold (0 .. count - 1) of the image with this Dataset key."""
    data = key.encode() if isinstance(key, str) else key
    digest = hashlib.sha256(FOLD_SALT + data).digest()
    return int.from_bytes(digest[:8], "big") % count


def in_part(key: str | bytes, fold: Fold, split: str) -> bool:
    """Whether an image of train + validation belongs to the fold's `split`: "validation" is
    the fold's own images, "train" every other one."""
    if split not in FOLD_SPLITS:
        raise ValueError(f"a fold has a train and a validation part, not {split!r}")
    return (fold_of(key, fold.count) == fold.index) == (split == "validation")


def held_out_keys(dataset_dir: str | Path, fold: Fold) -> tuple[list[bytes], int]:
    """The keys of the fold's own images (its validation part), and how many images train +
    validation hold (read from the shards' keys once per process: a Dataset never changes)."""
    held_out, total = _held_out_keys(str(Path(dataset_dir).resolve()), fold.index, fold.count)
    return list(held_out), total


@functools.lru_cache(maxsize=8)
def _held_out_keys(dataset_dir: str, index: int, count: int) -> tuple[tuple[bytes, ...], int]:
    keys = [key for split in FOLD_SPLITS for key in read_keys(dataset_dir, split)]
    return tuple(key for key in keys if fold_of(key, count) == index), len(keys)


def read_part(dataset_dir: str | Path, fold: Fold, split: str) -> tuple[list[bytes], np.ndarray]:
    """Encoded images and labels of the fold's `split` part of train + validation, in file
    order (the pure-Python reader's `read_split` for a fold)."""
    if split not in FOLD_SPLITS:
        raise ValueError(f"a fold has a train and a validation part, not {split!r}")
    return read_split(dataset_dir, FOLD_SPLITS, partial(in_part, fold=fold, split=split))


def part_sizes(dataset_dir: str | Path, fold: Fold) -> dict[str, int]:
    """Images of the fold's train and validation parts."""
    held_out, total = held_out_keys(dataset_dir, fold)
    return {"train": total - len(held_out), "validation": len(held_out)}


def input_sizes(
    dataset_dir: str | Path, num_examples: dict[str, int], fold: Fold | None
) -> dict[str, int]:
    """Images of a training's train and validation inputs: the splits' counts from
    dataset_info.json, or with a `fold` its two parts."""
    if fold is None:
        return {split: int(num_examples.get(split, 0)) for split in FOLD_SPLITS}
    return part_sizes(dataset_dir, fold)
