"""A transformers candidate through the whole pipeline with kfp.local: ingest -> train (tiny
ViT checkpoint from a temp folder) -> evaluate -> compare -> gate -> register."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("torch")
pytest.importorskip("transformers")

from components.models.loading import load_classifier  # noqa: E402
from pipelines.cli import main  # noqa: E402

pytestmark = pytest.mark.e2e


def _images(folder: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, level in (("dark", 50), ("bright", 205)):
        (folder / name).mkdir(parents=True)
        for index in range(30):
            pixels = np.clip(rng.normal(level, 25, (24, 24, 3)), 0, 255).astype("uint8")
            Image.fromarray(pixels).save(folder / name / f"{index}.png")
    return folder


def test_a_transformers_candidate_runs_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_hf_checkpoint: Callable[..., Path]
) -> None:
    experiment = {
        "description": "tiny ViT smoke run",
        # kfp.local cannot return a pipeline output holding None (compare's summary without
        # a reference), so the smoke run states one.
        "reference": {"metric": "accuracy", "value": 0.9},
        "data": {
            "source": f"folder:{_images(tmp_path / 'images')}",
            "image_size": [32, 32],
            "splits": {"validation": 0.2, "test": 0.2},
        },
        "models": [
            {
                "name": "tiny-vit",
                "framework": "transformers",
                "checkpoint": str(tiny_hf_checkpoint(tmp_path / "vit", "vit")),
                "epochs": 1,
                "batch_size": 8,
                "optimizer": {"name": "adamw", "learning_rate": 1.0e-3, "weight_decay": 0.05},
                "augment": {"flip": "horizontal"},
            }
        ],
        "gate": {"metric": "accuracy", "min": 0.0},
        "register": {"name": "tiny-vit-classifier"},
    }
    path = tmp_path / "tiny_vit.yaml"
    path.write_text(yaml.safe_dump(experiment))

    code = main(["--experiment", str(path), "--runs-dir", str(tmp_path / "runs"), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0, result.get("error")
    steps = {t["name"]: t["status"] for t in result["tasks"]}
    for step in ("ingest", "train", "evaluate", "compare", "gate", "register-local"):
        assert steps.get(step) == "SUCCESS", steps

    best = result["summary"]["best"]
    assert best["framework"] == "transformers" and best["name"] == "tiny-vit"
    model_dir = Path(best["model_uri"])
    card = json.loads((model_dir / "model_card.json").read_text())
    assert card["framework"] == "transformers" and card["class_names"] == ["bright", "dark"]
    assert card["training"]["epochs_run"] == 1
    assert (model_dir / "hf" / "model.safetensors").is_file()
    assert (model_dir / "history.json").is_file()
    train_dir = model_dir.parent
    assert "Training curves: tiny-vit" in (train_dir / "curves").read_text()

    evaluate_dir = train_dir.parent / "evaluate"
    predictions = np.load(evaluate_dir / "predictions" / "predictions.npz")
    assert predictions["probabilities"].shape == (len(predictions["keys"]), 2)
    assert json.loads((evaluate_dir / "metrics").read_text())["accuracy"] == pytest.approx(
        best["metrics"]["accuracy"]
    )

    assert result["registration"]["version"] == "v1"
    registry = tmp_path / "runs" / "registry" / "tiny-vit-classifier" / "v1"
    assert (registry / "model" / "hf" / "config.json").is_file()
    classifier = load_classifier(registry)
    probabilities = classifier.predict(np.full((2, 32, 32, 3), 200, "float32"))
    assert probabilities.shape == (2, 2)
