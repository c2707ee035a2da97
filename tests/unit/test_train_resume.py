"""A training step killed with SIGKILL resumes at its last finished epoch when restarted."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from components.spec import ModelSpec

EPOCHS = 8


def _dataset(image_dataset: Callable[..., Path], root: Path) -> Path:
    return image_dataset(root, {"dark": 60, "bright": 190}, 300, noise=60, validation=0.1, test=0.1)


def _epochs_logged(history_csv: Path) -> int:
    if not history_csv.is_file():
        return 0
    return max(len(history_csv.read_text().strip().splitlines()) - 1, 0)


@pytest.mark.restart
def test_sigkill_then_restart_resumes(
    tmp_path: Path, image_dataset: Callable[..., Path], train_process: Callable[..., Any]
) -> None:
    dataset = _dataset(image_dataset, tmp_path)
    spec = ModelSpec(
        name="resume",
        architecture="cnn3",
        epochs=EPOCHS,
        batch_size=16,
        params={"filters": [16, 32, 64], "dense": 64},
    )
    model_dir = tmp_path / "model"
    checkpoints = tmp_path / "checkpoints"
    process = train_process(dataset, spec, model_dir, checkpoints)
    history_csv = checkpoints / "head" / "history.csv"
    process.kill_when(lambda: _epochs_logged(history_csv) >= 2)
    killed_after = _epochs_logged(history_csv)
    assert 2 <= killed_after < EPOCHS, f"the first run logged {killed_after} epochs before the kill"
    assert not (model_dir / "model_card.json").exists()

    second = process.run()
    assert second.returncode == 0, second.stderr[-2000:]
    card = json.loads((model_dir / "model_card.json").read_text())
    assert card["training"]["epochs_run"] == EPOCHS
    assert len(card["history"]["loss"]) == EPOCHS
    # Resumed, not restarted: the second process began after the epochs the first one finished.
    assert f"Epoch 1/{EPOCHS}" not in second.stdout
    assert (
        f"Epoch {killed_after + 1}/{EPOCHS}" in second.stdout
        or f"Epoch {killed_after}/{EPOCHS}" in second.stdout
    )


def test_a_finished_phase_is_not_trained_again(
    tmp_path: Path, image_dataset: Callable[..., Path]
) -> None:
    from components.train.run import train

    dataset = _dataset(image_dataset, tmp_path)
    spec = ModelSpec(
        name="twice", architecture="small_cnn", epochs=2, batch_size=32, params={"filters": 4}
    )
    train(dataset, spec, 0, tmp_path / "a", tmp_path / "a.html", tmp_path / "ckpt")
    again = train(dataset, spec, 0, tmp_path / "b", tmp_path / "b.html", tmp_path / "ckpt")
    assert again.training["epochs_run"] == 2  # history restored from the finished phase's log
    assert (tmp_path / "ckpt" / "head.done.weights.h5").is_file()


@pytest.mark.parametrize("unfreeze", [0, 5])
def test_transfer_recipe_freezes_then_unfreezes(
    tmp_path: Path, image_dataset: Callable[..., Path], unfreeze: int
) -> None:
    from components.models.keras import build_model
    from components.train.run import train

    dataset = _dataset(image_dataset, tmp_path)
    # Stand-in for downloaded ImageNet weights: a saved backbone loaded through `weights: PATH`.
    backbone = build_model("mobilenetv3small", 2, (32, 32), 3).backbone
    weights = tmp_path / "backbone.weights.h5"
    backbone.save_weights(weights)
    spec = ModelSpec(
        name="transfer",
        architecture="mobilenetv3small",
        weights=str(weights),
        epochs=1,
        batch_size=64,
        fine_tune={"epochs": 1, "unfreeze_layers": unfreeze, "learning_rate": 1e-5},
    )
    card = train(dataset, spec, 0, tmp_path / "model", tmp_path / "curves.html")
    head, fine = card.training["phases"]
    assert (head["phase"], fine["phase"]) == ("head", "fine_tune")
    assert head["trainable_weights"] == 2  # only the new softmax head
    assert fine["trainable_weights"] > head["trainable_weights"]
    if unfreeze:
        full = build_model("mobilenetv3small", 2, (32, 32), 3).model
        assert fine["trainable_weights"] < len(full.trainable_weights)
    assert card.training["epochs_run"] == 2
