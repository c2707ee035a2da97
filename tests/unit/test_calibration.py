"""Temperature scaling: the fit on made logits, the config checks, and the keras and
transformers trainers that fold the temperature into the Model they save."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from components.spec import ModelSpec
from components.train.calibration import fit_temperature, log_loss, softmax
from pipelines.config import ConfigError, load_experiment


def made_predictions(temperature: float, images: int = 4000, classes: int = 10, seed: int = 0):
    """Logits z and labels drawn from softmax(z / temperature): a model whose probabilities
    softmax(z) are calibrated only after dividing by `temperature`."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, (images, classes))
    truth = softmax(logits / temperature)
    labels = np.array([rng.choice(classes, p=row) for row in truth])
    return softmax(logits), labels


@pytest.mark.parametrize("temperature", [0.4, 1.0, 2.5])
def test_the_fitted_temperature_is_the_one_the_labels_were_drawn_with(temperature: float) -> None:
    probabilities, labels = made_predictions(temperature)
    fitted = fit_temperature(probabilities, labels)
    assert fitted.temperature == pytest.approx(temperature, rel=0.1)
    assert fitted.validation_examples == len(labels)
    assert fitted.log_loss_after <= fitted.log_loss_before + 1e-9
    if temperature != 1.0:  # a miscalibrated model: the fit repairs it
        assert fitted.ece_after < fitted.ece_before / 2
        assert fitted.log_loss_after < fitted.log_loss_before - 0.01


def test_label_smoothing_like_under_confidence_gives_a_temperature_below_one() -> None:
    # Right 99% of the time, but never more than 90% sure: what label smoothing 0.1 trains.
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 2000)
    predicted = np.where(rng.random(2000) < 0.99, labels, (labels + 1) % 10)
    probabilities = np.full((2000, 10), 0.1 / 9)
    probabilities[np.arange(2000), predicted] = 0.9
    fitted = fit_temperature(probabilities, labels)
    assert fitted.temperature < 0.7
    assert fitted.ece_before > 0.08 and fitted.ece_after < 0.03
    calibrated = softmax(np.log(probabilities) / fitted.temperature)
    assert (calibrated.argmax(axis=1) == predicted).all()


def test_log_loss_is_scikit_learns() -> None:
    from sklearn.metrics import log_loss as sklearn_log_loss

    probabilities, labels = made_predictions(1.7, images=300)
    logits = np.log(probabilities)
    assert log_loss(logits, labels, 1.7) == pytest.approx(
        sklearn_log_loss(labels, softmax(logits / 1.7), labels=range(10)), rel=1e-9
    )


def test_no_validation_images_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="needs validation images"):
        fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int))


def test_calibration_needs_a_validation_split() -> None:
    with pytest.raises(ConfigError, match=r"mnist-cnn fit calibration's temperature"):
        load_experiment("mnist", ["data.splits.validation=0"])
    assert load_experiment("mnist", ["models.0.calibration=none", "data.splits.validation=0"])


def test_the_trainer_saves_the_model_with_its_logits_over_the_temperature(
    tmp_path: Path, image_dataset: Callable[..., Path]
) -> None:
    from components.models.loading import load_classifier
    from components.models.prediction import predict_split
    from components.train.run import train

    # Close brightness levels and heavy label smoothing: a model right on most images and
    # under-confident on all of them.
    dataset = image_dataset(
        tmp_path, {"dark": 110, "bright": 150}, 40, (8, 8), noise=30.0, validation=0.3, test=0.2
    )
    recipe = {
        "name": "tiny",
        "architecture": "small_cnn",
        "epochs": 3,
        "batch_size": 8,
        "params": {"filters": 4},
        "label_smoothing": 0.4,
    }
    raw = train(dataset, ModelSpec(**recipe), 3, tmp_path / "raw", tmp_path / "raw.html")
    card = train(
        dataset,
        ModelSpec(**recipe, calibration="temperature"),
        3,
        tmp_path / "calibrated",
        tmp_path / "calibrated.html",
    )
    assert raw.training["calibration"] is None
    record = card.training["calibration"]
    assert record["validation_examples"] == card.training["validation_examples"] > 0
    assert record["log_loss_after"] <= record["log_loss_before"]
    temperature = record["temperature"]
    assert temperature != pytest.approx(1.0, abs=0.02)
    before = predict_split(load_classifier(tmp_path / "raw"), dataset, "validation", quiet=True)
    after = predict_split(
        load_classifier(tmp_path / "calibrated"), dataset, "validation", quiet=True
    )
    # The same training (same seed), then softmax(logits / T) in every saved format's weights.
    np.testing.assert_allclose(
        after.probabilities,
        softmax(np.log(before.probabilities.astype(np.float64)) / temperature),
        atol=1e-4,
    )
    assert (after.probabilities.argmax(1) == before.probabilities.argmax(1)).all()
    assert log_loss(np.log(after.probabilities.astype(np.float64)), after.labels) == pytest.approx(
        record["log_loss_after"], abs=1e-4
    )


@pytest.mark.parametrize("kind", ["vit", "convnextv2"])
def test_the_transformers_trainer_divides_its_heads_logits_by_the_temperature(
    tmp_path: Path,
    image_dataset: Callable[..., Path],
    tiny_hf_checkpoint: Callable[..., Path],
    kind: str,
) -> None:
    pytest.importorskip("transformers")
    import torch

    from components.models.loading import load_classifier
    from components.train.transformers.trainer import fine_tune

    dataset = image_dataset(
        tmp_path,
        {"dark": 90, "mid": 128, "bright": 166},
        16,
        (20, 28),
        noise=25.0,
        image_size=(32, 32),
        validation=0.3,
    )
    spec = ModelSpec(
        name=kind,
        framework="transformers",
        checkpoint=str(tiny_hf_checkpoint(tmp_path / "checkpoint", kind)),
        epochs=2,
        batch_size=8,
        optimizer={"name": "adamw", "learning_rate": 2e-3},
        label_smoothing=0.4,
        calibration="temperature",
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the two trainings' weights alike to the last bit
    try:
        # a search trial's training (calibrate=False) leaves the model as trained
        raw = fine_tune(
            str(dataset), spec, 1, str(tmp_path / "raw"), str(tmp_path / "c1"), "", None, False
        )
        calibrated = fine_tune(
            str(dataset), spec, 1, str(tmp_path / "calibrated"), str(tmp_path / "c2")
        )
    finally:
        torch.set_num_threads(threads)
    assert raw.card is not None and calibrated.card is not None
    assert raw.card.training["calibration"] is None
    record = calibrated.card.training["calibration"]
    assert record["validation_examples"] == calibrated.card.training["validation_examples"] > 0
    assert record["log_loss_after"] <= record["log_loss_before"]
    temperature = record["temperature"]
    assert temperature != pytest.approx(1.0, abs=0.02)
    height, width = calibrated.card.input_size
    images = np.random.default_rng(2).uniform(0, 255, (6, height, width, 3)).astype("float32")
    before = load_classifier(tmp_path / "raw").logits(images)
    after = load_classifier(tmp_path / "calibrated").logits(images)
    np.testing.assert_allclose(after, before / temperature, rtol=1e-4, atol=1e-5)
    assert (after.argmax(1) == before.argmax(1)).all()


def test_a_model_without_a_linear_head_is_told_to_leave_calibration_out() -> None:
    pytest.importorskip("transformers")
    from types import SimpleNamespace

    import torch

    from components.models.transformers import CheckpointError, classifier_head

    class Pooled(torch.nn.Module):
        config = SimpleNamespace(num_labels=3)

        def __init__(self) -> None:
            super().__init__()
            self.classifier = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Conv1d(8, 3, 1))

    with pytest.raises(CheckpointError, match="no linear `classifier` head with 3 outputs"):
        classifier_head(Pooled())
    model = Pooled()
    model.classifier.append(torch.nn.Linear(3, 3))
    assert classifier_head(model) is model.classifier[-1]
