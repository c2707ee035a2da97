"""Keras model registry and trainer on tiny synthetic Datasets."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from components.models.keras import APPLICATIONS, SCRATCH, build_model
from components.spec import ModelSpec


def test_the_registry_builds_from_the_spec_names() -> None:
    # The registry is derived from components.spec's names; anything else is refused by name.
    with pytest.raises(ValueError, match="unknown architecture 'vgg99'; known: .*small_cnn"):
        build_model("vgg99", 2, (16, 16), 3)


@pytest.mark.parametrize(("fill", "black_enters"), [("constant", True), ("reflect", False)])
def test_augmentation_fill_decides_what_shows_past_the_edge(fill: str, black_enters: bool) -> None:
    import keras

    from components.train.keras.trainer import augmentation_layers

    spec = ModelSpec.model_validate(
        {"name": "m", "architecture": "small_cnn", "augment": {"translation": 0.3, "fill": fill}}
    )
    keras.utils.set_random_seed(3)
    white = np.full((8, 12, 12, 1), 255.0, "float32")
    (layer,) = augmentation_layers(spec)
    shifted = np.asarray(layer(white, training=True))
    assert bool(shifted.min() < 1) == black_enters


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd", "rmsprop"])
def test_weight_decay_zero_trains_without_decay(name: str) -> None:
    """With a zero gradient only weight decay can move a weight: 0 leaves it as it is."""
    import keras

    from components.spec import Optimizer
    from components.train.keras.trainer import make_optimizer

    def after_one_step(decay: float) -> np.ndarray:
        optimizer = make_optimizer(Optimizer(name=name, weight_decay=decay), 0.1)
        variable = keras.Variable(np.ones(4, "float32"))
        optimizer.apply_gradients([(keras.ops.zeros(4), variable)])
        return np.asarray(variable)

    np.testing.assert_array_equal(after_one_step(0.0), np.ones(4))
    # control: the same step with decay shrinks the weight by lr x decay
    np.testing.assert_allclose(after_one_step(0.05), np.full(4, 1 - 0.1 * 0.05), rtol=1e-6)


@pytest.mark.parametrize("architecture", sorted(SCRATCH))
def test_scratch_models_build_and_train_one_step(architecture: str) -> None:
    import keras

    built = build_model(architecture, num_classes=3, image_size=(32, 32), channels=3)
    model = built.model
    assert model.input_shape == (None, 32, 32, 3)
    assert model.output_shape == (None, 3)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    before = [w.copy() for w in model.get_weights()]
    model.train_on_batch(images, np.array([0, 1, 2, 0]))
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    probabilities = np.asarray(model.predict_on_batch(images))
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert isinstance(model, keras.Model)


def test_application_backbone_carries_its_preprocessing() -> None:
    built = build_model("mobilenetv3small", 5, (32, 32), 3, {"input_size": 64})
    assert built.input_size == (64, 64)
    assert built.model.input_shape == (None, 64, 64, 3)
    assert built.backbone is not None and built.backbone.name.lower().startswith("mobilenetv3")
    resnet = build_model("resnet50v2", 2, (64, 64), 3)
    assert resnet.preprocessing == "tf"
    assert any(layer.__class__.__name__ == "Rescaling" for layer in resnet.model.layers)


def test_cnn3_knobs_change_the_model() -> None:
    plain = build_model("cnn3", 2, (32, 32), 3, {"filters": [8, 16, 32], "dense": 16}).model
    regularised = build_model(
        "cnn3",
        2,
        (32, 32),
        3,
        {"filters": [8, 16, 32], "dense": 16, "batch_norm": True, "dropout": 0.5},
    ).model
    kinds = {layer.__class__.__name__ for layer in regularised.layers}
    assert {"BatchNormalization", "Dropout"} <= kinds
    assert "BatchNormalization" not in {layer.__class__.__name__ for layer in plain.layers}


def test_trainer_writes_a_model_that_reloads_with_the_same_outputs(
    tmp_path: Path, image_dataset: Callable[..., Path], tensorboard_events: Any
) -> None:
    from components.models.loading import load_classifier
    from components.train.run import train

    # Two classes that a CNN separates in a few steps: dark and bright noisy squares.
    dataset = image_dataset(
        tmp_path, {"dark": 40, "bright": 210}, 30, (16, 16), validation=0.2, test=0.2
    )
    spec = ModelSpec(
        name="tiny", architecture="small_cnn", epochs=3, batch_size=8, params={"filters": 4}
    )
    card = train(
        dataset,
        spec,
        0,
        tmp_path / "model",
        tmp_path / "curves.html",
        tmp_path / "ckpt",
        tmp_path / "tensorboard",
    )
    assert card.class_names == ["bright", "dark"]
    outcome = card.training["outcome"]
    assert outcome["planned_epochs"] == outcome["epochs_run"] == 3
    assert outcome["stopped_early"] is False and 1 <= outcome["best_epoch"] <= 3
    curves = (tmp_path / "curves.html").read_text()
    assert (
        f"at epoch {outcome['best_epoch']}" in curves
        and f"{outcome['best_epoch']} (best)" in curves
    )
    train_tags = tensorboard_events.scalar_tags(tmp_path / "tensorboard" / "train")
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"} <= train_tags
    assert {"epoch_loss", "epoch_accuracy"} <= tensorboard_events.scalar_tags(
        tmp_path / "tensorboard" / "validation"
    )
    assert tensorboard_events.has_keras_graph(tmp_path / "tensorboard" / "train")
    assert card.training["epochs_run"] == 3
    assert len(card.history["loss"]) == 3 and "val_accuracy" in card.history
    assert json.loads((tmp_path / "model" / "history.json").read_text()) == card.history
    assert "<img" in (tmp_path / "curves.html").read_text()

    import keras

    images = np.random.default_rng(1).uniform(0, 255, (5, 16, 16, 3)).astype("float32")
    original = keras.saving.load_model(tmp_path / "model" / "keras" / "model.keras")
    reloaded = load_classifier(tmp_path / "model")
    np.testing.assert_allclose(
        reloaded.predict(images),
        np.asarray(original.predict_on_batch(images)),
        rtol=1e-5,
        atol=1e-6,
    )
    import tensorflow as tf

    serving = tf.saved_model.load(str(tmp_path / "model" / "keras" / "saved_model"))
    np.testing.assert_allclose(
        serving.serve(tf.constant(images)).numpy(), reloaded.predict(images), rtol=1e-4, atol=1e-5
    )

    # The test split's predictions the trainer kept are those evaluation makes with the saved
    # model, for this Dataset.
    from components.models.prediction import load_stored, predict_split

    fingerprint = json.loads((dataset / "dataset_info.json").read_text())["fingerprint"]
    kept = load_stored(tmp_path / "model", fingerprint)
    assert kept is not None
    predicted = predict_split(reloaded, dataset, "test")
    assert kept.keys.tolist() == predicted.keys.tolist()
    assert kept.labels.tolist() == predicted.labels.tolist()
    np.testing.assert_allclose(kept.probabilities, predicted.probabilities, atol=1e-6)


def test_a_search_trial_keeps_no_test_predictions(
    tmp_path: Path, image_dataset: Callable[..., Path]
) -> None:
    from components.models.prediction import STORED_PREDICTIONS_FILE
    from components.train.run import train

    dataset = image_dataset(tmp_path, {"dark": 40, "bright": 210}, 10, (8, 8), test=0.2)
    spec = ModelSpec(
        name="tiny", architecture="small_cnn", epochs=1, batch_size=8, params={"filters": 2}
    )
    train(dataset, spec, 0, tmp_path / "trial", tmp_path / "trial.html", trial=0)
    assert (tmp_path / "trial" / "model_card.json").is_file()
    assert not (tmp_path / "trial" / STORED_PREDICTIONS_FILE).exists()


def test_same_seed_same_weights(tmp_path: Path, image_dataset: Callable[..., Path]) -> None:
    from components.train.run import train

    # Two classes that a CNN separates in a few steps: dark and bright noisy squares.
    dataset = image_dataset(
        tmp_path, {"dark": 40, "bright": 210}, 30, (16, 16), validation=0.2, test=0.2
    )
    spec = ModelSpec(
        name="tiny", architecture="small_cnn", epochs=1, batch_size=8, params={"filters": 4}
    )
    first = train(dataset, spec, 7, tmp_path / "a", tmp_path / "a.html")
    second = train(dataset, spec, 7, tmp_path / "b", tmp_path / "b.html")
    assert first.history["loss"] == pytest.approx(second.history["loss"], rel=1e-5)


# One member of each keras.applications family trains a step in every run; the other sizes
# share the family's code and only need to build (the `slow` tier, `make test-slow`).
FAMILY_REPRESENTATIVES = (
    "resnet50v2",
    "inceptionv3",
    "mobilenetv3small",
    "efficientnetv2b0",
    "convnexttiny",
    "densenet121",
)


def _input_side(architecture: str) -> int:
    return 75 if architecture == "inceptionv3" else 32  # InceptionV3's smallest input


@pytest.mark.parametrize("architecture", FAMILY_REPRESENTATIVES)
def test_each_application_family_builds_and_trains_one_step(architecture: str) -> None:
    import keras

    size = _input_side(architecture)
    keras.backend.clear_session()
    built = build_model(architecture, 3, (size, size), 3)
    model = built.model
    assert model.output_shape == (None, 3)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    images = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    before = [np.array(w) for w in model.trainable_weights[-1:]]
    loss = float(model.train_on_batch(images, np.array([0, 2])))
    assert np.isfinite(loss)
    assert not np.allclose(before[0], np.array(model.trainable_weights[-1]))


@pytest.mark.slow
@pytest.mark.parametrize("architecture", sorted(set(APPLICATIONS) - set(FAMILY_REPRESENTATIVES)))
def test_every_application_size_builds(architecture: str) -> None:
    import keras

    size = _input_side(architecture)
    keras.backend.clear_session()
    built = build_model(architecture, 3, (size, size), 3)
    assert built.model.output_shape == (None, 3)
    assert built.backbone is not None
