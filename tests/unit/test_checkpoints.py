"""The checkpoint folder is a pure function of what decides a training's result."""

from __future__ import annotations

from pathlib import Path

from components.spec import ModelSpec
from components.train.checkpoints import checkpoint_dir, resume_message


def spec(**fields: object) -> ModelSpec:
    return ModelSpec.model_validate({"name": "small-cnn", "architecture": "small_cnn", **fields})


def test_same_inputs_same_folder_and_each_input_counts(tmp_path: Path) -> None:
    base = checkpoint_dir(tmp_path, spec(), 0, "fp1")
    assert base == checkpoint_dir(tmp_path, spec(), 0, "fp1") and base.is_dir()
    assert base.parent == tmp_path and base.name.startswith("small-cnn-seed0-")
    others = {
        checkpoint_dir(tmp_path, spec(), 1, "fp1"),
        checkpoint_dir(tmp_path, spec(), 0, "fp2"),
        checkpoint_dir(tmp_path, spec(epochs=11), 0, "fp1"),
        checkpoint_dir(tmp_path, spec(optimizer={"learning_rate": 0.01}), 0, "fp1"),
    }
    assert base not in others and len(others) == 4


def test_fresh_empties_only_its_own_folder(tmp_path: Path) -> None:
    mine = checkpoint_dir(tmp_path, spec(), 0, "fp")
    other = checkpoint_dir(tmp_path, spec(), 1, "fp")
    (mine / "last.pt").write_bytes(b"state")
    (other / "last.pt").write_bytes(b"state")
    again = checkpoint_dir(tmp_path, spec(), 0, "fp", fresh=True)
    assert again == mine and again.is_dir() and not list(again.iterdir())
    assert (other / "last.pt").is_file()


def test_resume_message() -> None:
    assert resume_message("small-cnn", 0, 5, 40) == "resuming small-cnn seed 0 at epoch 6/40"
    assert "training had finished (40/40 epochs)" in resume_message("small-cnn", 0, 40, 40)
