"""K-fold assignment of a Dataset's images (search.folds): the hash, its balance, and the same
folds from the Keras (tf.data) and the transformers (pure-Python) readers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from components.common.folds import (
    FOLD_SPLITS,
    fold_of,
    in_part,
    input_sizes,
    part_sizes,
    read_part,
)
from components.common.tfrecord import read_keys, read_split
from components.spec import Fold

KEYS = [f"images/{label}/{index:05d}.png" for label in ("cat", "dog") for index in range(2500)]


def test_a_key_has_one_fold_whatever_its_type_and_order():
    forward = [fold_of(k, 5) for k in KEYS]
    backward = [fold_of(k.encode(), 5) for k in reversed(KEYS)]
    assert forward == backward[::-1]
    assert set(forward) == set(range(5))


@pytest.mark.parametrize("count", [2, 3, 5, 10])
def test_folds_are_balanced(count):
    sizes = Counter(fold_of(k, count) for k in KEYS)
    expected = len(KEYS) / count
    # A fair hash: each fold's size is binomial, within 4 standard deviations of n / K.
    bound = 4 * (len(KEYS) * (1 / count) * (1 - 1 / count)) ** 0.5
    assert all(abs(sizes[k] - expected) < bound for k in range(count)), sizes


def test_a_folds_parts_are_disjoint_and_the_validation_parts_cover_every_image():
    count = 4
    held_out: list[set[str]] = []
    for index in range(count):
        fold = Fold(index=index, count=count)
        train = {k for k in KEYS if in_part(k, fold, "train")}
        validation = {k for k in KEYS if in_part(k, fold, "validation")}
        assert train.isdisjoint(validation)
        assert train | validation == set(KEYS)
        held_out.append(validation)
    assert sum(len(v) for v in held_out) == len(KEYS)
    assert set().union(*held_out) == set(KEYS)


def test_a_fold_has_no_test_part():
    with pytest.raises(ValueError, match="not 'test'"):
        in_part("a", Fold(index=0, count=2), "test")


@pytest.mark.parametrize("fold", [{"index": 2, "count": 2}, {"index": 0, "count": 1}])
def test_a_fold_index_below_its_count(fold):
    with pytest.raises(ValidationError):
        Fold.model_validate(fold)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, image_dataset) -> Path:
    root = tmp_path_factory.mktemp("folds")
    return image_dataset(root, {"dark": 40, "light": 200}, per_class=30, shape=(8, 8))


def test_keras_and_transformers_readers_read_the_same_fold_parts(dataset):
    from components.common.results import DatasetInfo
    from components.common.tfdata import make_dataset

    info = DatasetInfo.read(dataset)
    pool = [k for split in FOLD_SPLITS for k in read_keys(dataset, split)]
    test_keys = set(read_keys(dataset, "test"))
    assert len(pool) == info.num_examples["train"] + info.num_examples["validation"]
    seen_in_validation: list[bytes] = []
    for index in range(3):
        fold = Fold(index=index, count=3)
        sizes = part_sizes(dataset, fold)
        assert sizes["train"] + sizes["validation"] == len(pool)
        for split in FOLD_SPLITS:
            batches = make_dataset(dataset, split, (8, 8), 3, 16, with_keys=True, fold=fold)
            tf_keys = [k for _, _, keys in batches for k in keys.numpy().tolist()]
            tf_labels = [int(y) for _, labels, _ in batches for y in labels.numpy()]
            encoded, labels = read_part(dataset, fold, split)
            assert len(tf_keys) == len(encoded) == sizes[split]
            assert Counter(tf_labels) == Counter(labels.tolist())
            assert set(tf_keys) == {k for k in pool if in_part(k, fold, split)}
            assert test_keys.isdisjoint(tf_keys)
        seen_in_validation += [k for k in pool if in_part(k, fold, "validation")]
    assert sorted(seen_in_validation) == sorted(pool)


def test_without_a_fold_the_inputs_are_the_splits(dataset):
    from components.common.results import DatasetInfo

    info = DatasetInfo.read(dataset)
    assert input_sizes(dataset, info.num_examples, None) == {
        "train": info.num_examples["train"],
        "validation": info.num_examples["validation"],
    }
    encoded, _ = read_split(dataset, "validation")
    assert len(encoded) == info.num_examples["validation"]


def test_a_keras_fold_trains_on_its_part_and_says_so(tmp_path, dataset):
    from components.common.model_card import ModelCard
    from components.spec import ModelSpec
    from components.train.run import train

    spec = ModelSpec.model_validate(
        {"name": "cnn", "architecture": "small_cnn", "epochs": 1, "batch_size": 32}
    )
    fold = Fold(index=1, count=3)
    card = train(dataset, spec, 0, tmp_path / "model", tmp_path / "curves.html", trial=0, fold=fold)
    assert card is not None
    sizes = part_sizes(dataset, fold)
    saved = ModelCard.load(tmp_path / "model")
    assert saved.training["fold"] == {"index": 1, "count": 3}
    assert saved.training["train_examples"] == sizes["train"]
    assert saved.training["validation_examples"] == sizes["validation"]
    assert len(saved.history["val_accuracy"]) == 1


def test_a_transformers_fold_trains_on_its_part(tmp_path, dataset, tiny_hf_checkpoint):
    from components.spec import ModelSpec
    from components.train.transformers.trainer import train_transformers

    checkpoint = tiny_hf_checkpoint(tmp_path / "vit", "vit")
    spec = ModelSpec.model_validate(
        {
            "name": "vit",
            "framework": "transformers",
            "checkpoint": str(checkpoint),
            "epochs": 1,
            "batch_size": 16,
        }
    )
    fold = Fold(index=0, count=2)
    card = train_transformers(dataset, spec, 0, tmp_path / "model", tmp_path / "ck", fold=fold)
    assert card is not None
    sizes = part_sizes(dataset, fold)
    assert card.training["fold"] == {"index": 0, "count": 2}
    assert card.training["train_examples"] == sizes["train"]
    assert card.training["validation_examples"] == sizes["validation"]


def test_a_training_request_carries_its_fold_to_every_process(tmp_path):
    from components.spec import ModelSpec
    from components.train.request import Request

    spec = ModelSpec.model_validate(
        {"name": "vit", "framework": "transformers", "checkpoint": "google/vit-base-patch16-224"}
    )
    fold = Fold(index=2, count=5)
    sent = Request("data", spec, 0, "model", "checkpoints", "", fold)
    assert Request.read(sent.write(tmp_path / "request.json")) == sent
    plain = Request("data", spec, 0, "model", "checkpoints")
    assert Request.read(plain.write(tmp_path / "plain.json")).fold is None
