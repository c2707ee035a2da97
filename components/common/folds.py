"""K-fold assignment of a Dataset's images, for ranking search trials on small data.

An image's fold is `SipHash-2-4(FOLD_HASH_KEY, key) mod K` of its stable `key` (the Dataset
contract's id of the source item), so it depends on nothing but the key: not on the shard, the
order of the records or the framework. TensorFlow computes the same hash natively
(`tf.strings.to_hash_bucket_strong`, which is SipHash-2-4 mod the bucket count), so the Keras
trainer filters in tf.data; the transformers trainer, which imports no TensorFlow, computes it
here in plain Python (`siphash24`). Both are checked against each other in the tests.

With a fold, the trainers' "train" and "validation" name the fold's two parts of train +
validation (`FOLD_SPLITS`): training on every image outside the fold, validating on the fold's
images. The test split is never read.
"""

from __future__ import annotations

import struct
from pathlib import Path

from components.spec import Fold

# The splits a K-fold ranking divides; the test split stays out of every fold.
FOLD_SPLITS = ("train", "validation")
# The SipHash key (two 64-bit words, as tf.strings.to_hash_bucket_strong takes it). Changing it
# moves every image to another fold.
FOLD_HASH_KEY = (0x6B666F6C64, 0x466F6C6473)
_MASK = (1 << 64) - 1


def _rotl(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (64 - bits))) & _MASK


def siphash24(data: bytes, key: tuple[int, int] = FOLD_HASH_KEY) -> int:
    """SipHash-2-4 of `data` (Aumasson and Bernstein, 2012) under the 128-bit `key` given as
    two little-endian 64-bit words: the hash TensorFlow's `to_hash_bucket_strong` takes."""
    k0, k1 = key
    v0 = k0 ^ 0x736F6D6570736575
    v1 = k1 ^ 0x646F72616E646F6D
    v2 = k0 ^ 0x6C7967656E657261
    v3 = k1 ^ 0x7465646279746573

    def rounds(count: int) -> None:
        nonlocal v0, v1, v2, v3
        for _ in range(count):
            v0 = (v0 + v1) & _MASK
            v1 = _rotl(v1, 13) ^ v0
            v0 = _rotl(v0, 32)
            v2 = (v2 + v3) & _MASK
            v3 = _rotl(v3, 16) ^ v2
            v0 = (v0 + v3) & _MASK
            v3 = _rotl(v3, 21) ^ v0
            v2 = (v2 + v1) & _MASK
            v1 = _rotl(v1, 17) ^ v2
            v2 = _rotl(v2, 32)

    tail = len(data) % 8
    for (word,) in struct.iter_unpack("<Q", data[: len(data) - tail]):
        v3 ^= word
        rounds(2)
        v0 ^= word
    word = (len(data) & 0xFF) << 56 | int.from_bytes(data[len(data) - tail :], "little")
    v3 ^= word
    rounds(2)
    v0 ^= word
    v2 ^= 0xFF
    rounds(4)
    return v0 ^ v1 ^ v2 ^ v3


def fold_of(key: str | bytes, count: int) -> int:
    """The fold (0 .. count - 1) of the image with this Dataset key."""
    data = key.encode() if isinstance(key, str) else key
    return siphash24(data) % count


def in_part(key: str | bytes, fold: Fold, split: str) -> bool:
    """Whether an image of train + validation belongs to the fold's `split`: "validation" is
    the fold's own images, "train" every other one."""
    if split not in FOLD_SPLITS:
        raise ValueError(f"a fold has a train and a validation part, not {split!r}")
    return (fold_of(key, fold.count) == fold.index) == (split == "validation")


def part_sizes(dataset_dir: str | Path, fold: Fold) -> dict[str, int]:
    """Images of the fold's train and validation parts (read from the shards' keys)."""
    from components.common.tfrecord import read_keys

    held_out = 0
    total = 0
    for split in FOLD_SPLITS:
        for key in read_keys(dataset_dir, split):
            total += 1
            held_out += fold_of(key, fold.count) == fold.index
    return {"train": total - held_out, "validation": held_out}


def input_sizes(
    dataset_dir: str | Path, num_examples: dict[str, int], fold: Fold | None
) -> dict[str, int]:
    """Images of a training's train and validation inputs: the splits' counts from
    dataset_info.json, or with a `fold` its two parts."""
    if fold is None:
        return {split: int(num_examples.get(split, 0)) for split in FOLD_SPLITS}
    return part_sizes(dataset_dir, fold)
