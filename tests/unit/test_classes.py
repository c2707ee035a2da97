"""The class count known before ingest, and the gate metrics it allows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from components.ingest.classes import known_class_count
from components.spec import DataConfig
from pipelines.config import ConfigError, check_metrics, load_experiment


def folders(root: Path, names: list[str]) -> Path:
    for name in names:
        (root / name).mkdir(parents=True)
        (root / name / "0.png").write_bytes(b"x")
    return root


def test_counts_from_listings(tmp_path: Path) -> None:
    assert known_class_count(DataConfig(source="sklearn:digits")) == 10
    root = folders(tmp_path / "pets", ["cat", "dog", ".cache"])
    assert known_class_count(DataConfig(source=f"folder:{root}")) == 2
    wrapped = folders(tmp_path / "kaggle" / "PetImages", ["Cat", "Dog", "Bird"])
    assert known_class_count(DataConfig(source=f"folder:{wrapped.parent}")) == 3
    manifest = tmp_path / "labels.csv"
    manifest.write_text("path,label\na.png,cat\nb.png,dog\nc.png,cat\nd.png,owl\n")
    for name in "abcd":
        (tmp_path / f"{name}.png").write_bytes(b"x")
    assert known_class_count(DataConfig(source=f"csv:{manifest}")) == 3
    arrays = tmp_path / "data.npz"
    np.savez(
        arrays,
        x=np.zeros((3, 8, 8)),
        y=np.array([0, 1, 1]),
        x_test=np.zeros((1, 8, 8)),
        y_test=np.array([4]),
    )
    assert known_class_count(DataConfig(source=f"npz:{arrays}")) == 3
    named = tmp_path / "named.npz"
    np.savez(
        named, x=np.zeros((2, 8, 8)), y=np.array([0, 1]), class_names=np.array(["a", "b", "c"])
    )
    assert known_class_count(DataConfig(source=f"npz:{named}")) == 3


def test_classes_and_label_map_decide(tmp_path: Path) -> None:
    assert known_class_count(DataConfig(source="folder:gs://b/x", classes=["a", "b"])) == 2
    vehicles = {"0": "vehicle", "1": "vehicle", "2": "animal", "3": "animal"}
    assert known_class_count(DataConfig(source="sklearn:digits", label_map=vehicles)) == 2


def test_unknowable_counts_are_none(tmp_path: Path) -> None:
    assert known_class_count(DataConfig(source="folder:gs://bucket/pets")) is None
    assert known_class_count(DataConfig(source="hf:someone/pets")) is None
    assert known_class_count(DataConfig(source=f"folder:{tmp_path / 'absent'}")) is None
    here = folders(tmp_path / "mounted", ["a", "b"])
    assert known_class_count(DataConfig(source=f"folder:{here}"), (str(tmp_path),)) is None


def test_tfds_count_from_builder_info() -> None:
    pytest.importorskip("tensorflow_datasets")
    assert known_class_count(DataConfig(source="tfds:cifar100")) == 100


def experiment(overrides: list[str]):
    return load_experiment("digits", overrides)


def test_top5_on_ten_classes_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        check_metrics(experiment(["gate.metric=top5_accuracy"]))
    message = str(caught.value)
    assert message.startswith(
        "gate.metric: top5_accuracy needs at least 11 classes and this task has 10"
    )
    # every metric it suggests is one the config accepts and the evaluation computes
    suggested = message.split("use one of ")[1].split(" (data:")[0].split(", ")
    assert "top5_accuracy" not in suggested and "roc_auc" not in suggested
    for metric in suggested:
        assert check_metrics(experiment([f"gate.metric={metric}"])) == 10


def test_binary_metrics_need_two_classes(tmp_path: Path) -> None:
    root = folders(tmp_path / "pets", ["cat", "dog"])
    two = experiment([f"data.source=folder:{root}", "gate.metric=roc_auc"])
    assert check_metrics(two) == 2
    three = experiment(["gate.metric=roc_auc"])
    with pytest.raises(ConfigError, match="roc_auc needs at most 2 classes"):
        check_metrics(three)


def test_reference_metric_is_checked_too() -> None:
    with pytest.raises(ConfigError, match="^reference.metric: top5_accuracy"):
        check_metrics(experiment(["reference.metric=top5_accuracy", "reference.value=0.9"]))


def test_unknown_count_is_left_to_compare() -> None:
    assert (
        check_metrics(
            experiment(["data.source=folder:gs://bucket/pets", "gate.metric=top5_accuracy"])
        )
        is None
    )
