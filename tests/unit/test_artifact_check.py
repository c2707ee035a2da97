"""The train step keeps its test predictions only after the saved artifact, loaded back as every
reader loads it, has reproduced them; evaluation reuses them only with that check recorded."""

from __future__ import annotations

import numpy as np
import pytest
from test_evaluate_run import png, write_dataset

from components.common.model_card import ModelCard
from components.models.keras import HeldKerasClassifier
from components.models.prediction import (
    ARTIFACT_TOLERANCE,
    STORED_PREDICTIONS_FILE,
    ArtifactMismatchError,
    keep_test_predictions,
    load_stored,
    predict_split,
)

CLASSES = ["red", "green", "blue"]


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    colours = [(220, 20, 20), (20, 220, 20), (20, 20, 220)]
    examples = [
        (f"{CLASSES[label]}/{i}", label, png(tuple(max(0, c - 5 * i) for c in colour)))
        for label, colour in enumerate(colours)
        for i in range(30)
    ]
    return write_dataset(tmp_path_factory.mktemp("split") / "dataset", CLASSES, examples)


def held(model_dir, head=None):
    """What the trainer holds: the model it saved, or (`head`) one whose head it changed
    after saving, as a model that does not save what it computes."""
    import keras

    model = keras.models.load_model(model_dir / "keras" / "model.keras")
    if head is not None:
        model.get_layer("probabilities").set_weights([head, np.zeros(3, dtype=np.float32)])
    return HeldKerasClassifier(model, ModelCard.load(model_dir))


def test_a_model_that_reloads_as_trained_keeps_its_predictions_with_the_check(
    tmp_path, split, colour_model_writer
):
    model_dir = colour_model_writer(tmp_path / "model", CLASSES)
    assert keep_test_predictions(held(model_dir), split, model_dir) is not None

    stored = load_stored(model_dir, "synthetic")
    assert stored is not None and len(stored.keys) == 90
    assert stored.artifact_sample == 64  # the first 64 of the split
    assert stored.artifact_max_difference <= 1e-6 < ARTIFACT_TOLERANCE


def test_a_model_that_does_not_save_what_it_computes_fails_with_the_numbers(
    tmp_path, split, colour_model_writer
):
    model_dir = colour_model_writer(tmp_path / "model", CLASSES)
    swapped = 20 * np.eye(3, dtype=np.float32)[:, [0, 2, 1]]  # green and blue exchanged
    with pytest.raises(ArtifactMismatchError) as raised:
        keep_test_predictions(held(model_dir, swapped), split, model_dir)
    message = str(raised.value)
    # the sample holds 30 red, 30 green and 4 blue images: 34 answers change
    assert "on the first 64 test images" in message
    assert "its top-1 differs on 34 (green/0, green/1, green/2, green/3, green/4, ...)" in message
    assert "probabilities by up to 1 (tolerance 0.001)" in message
    assert not (model_dir / STORED_PREDICTIONS_FILE).exists()
    assert not list(model_dir.glob(".*partial"))


def test_a_small_difference_past_the_tolerance_fails_too(tmp_path, split, colour_model_writer):
    import keras

    model_dir = colour_model_writer(tmp_path / "model", CLASSES)
    # a less certain model (logits 2 x the mean colour), so a small change shows
    path = model_dir / "keras" / "model.keras"
    model = keras.models.load_model(path)
    mild = 2 * np.eye(3, dtype=np.float32)
    model.get_layer("probabilities").set_weights([mild, np.zeros(3, dtype=np.float32)])
    model.save(path)
    nudged = mild + 0.02 * np.eye(3, dtype=np.float32)[:, [1, 2, 0]]
    with pytest.raises(ArtifactMismatchError, match=r"top-1 differs on 0 and its probabilities"):
        keep_test_predictions(held(model_dir, nudged), split, model_dir)
    keep_test_predictions(held(model_dir), split, model_dir)  # the model as saved: kept
    assert load_stored(model_dir, "synthetic") is not None


def test_predictions_kept_without_the_check_are_not_reused(tmp_path, split, colour_model_writer):
    model_dir = colour_model_writer(tmp_path / "model", CLASSES)
    predicted = predict_split(held(model_dir), split)
    np.savez(
        model_dir / STORED_PREDICTIONS_FILE,
        keys=predicted.keys,
        labels=predicted.labels,
        probabilities=predicted.probabilities,
        fingerprint=np.asarray("synthetic"),
        split=np.asarray("test"),
    )
    assert load_stored(model_dir, "synthetic") is None
