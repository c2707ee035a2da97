"""A tiny transformers fine-tune with `--runner docker`: training in the transformers image (torch
falls back to the CPU), ingest, evaluation and the rest in the cpu image, as uid 1000. The data
and the tiny ConvNeXt V2 (built from a config, saved locally) lie in the pipeline root, the one
folder the containers see."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from pipelines.cli import main
from pipelines.targets.local.capture import Capture

pytestmark = pytest.mark.docker
pytest.importorskip("transformers")


def write_images(folder: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, level in (("dark", 50), ("bright", 205)):
        (folder / name).mkdir(parents=True)
        for index in range(24):
            pixels = np.clip(rng.normal(level, 25, (24, 24, 3)), 0, 255).astype("uint8")
            Image.fromarray(pixels).save(folder / name / f"{index}.png")
    return folder


def test_a_tiny_convnext_v2_fine_tunes_in_the_transformers_image(
    built_image: Callable[[str], str],
    tiny_hf_checkpoint: Callable[..., Path],
    tmp_path: Path,
) -> None:
    built_image("cpu")
    built_image("transformers")
    runs = tmp_path / "runs"
    inputs = runs / "tiny-convnext" / "inputs"  # inside the pipeline root, runs/<name>/
    experiment = {
        "description": "tiny ConvNeXt V2 in its image",
        "reference": {"metric": "accuracy", "value": 0.9},
        "data": {
            "source": f"folder:{write_images(inputs / 'images')}",
            "image_size": [32, 32],
            "splits": {"validation": 0.2, "test": 0.2},
        },
        "models": [
            {
                "name": "tiny-convnextv2",
                "framework": "transformers",
                "checkpoint": str(tiny_hf_checkpoint(inputs / "convnextv2", "convnextv2")),
                "epochs": 1,
                "batch_size": 8,
                "optimizer": {"name": "adamw", "learning_rate": 1.0e-3, "weight_decay": 0.05},
            }
        ],
        "gate": {"metric": "accuracy", "min": 0.0},
        "register": {"name": "tiny-convnext-classifier"},
    }
    # safetensors writes 0600: readable by the steps' user only when opened to all
    for written in inputs.rglob("*"):
        written.chmod(0o755 if written.is_dir() else 0o644)
    path = tmp_path / "tiny-convnext.yaml"
    path.write_text(yaml.safe_dump(experiment))
    images: dict[str, str] = {}
    original = Capture.run_container

    def record(
        self: Capture, client: Any, image: str, command: list[str], *a: Any, **k: Any
    ) -> int:
        images[command[command.index("--function_to_execute") + 1]] = image
        return original(self, client, image, command, *a, **k)

    out = tmp_path / "result.json"
    with pytest.MonkeyPatch.context() as patch, out.open("w") as stdout:
        patch.setattr(Capture, "run_container", record)
        with contextlib.redirect_stdout(stdout):
            code = main(["-e", str(path), "--runner", "docker", "--runs-dir", str(runs), "--json"])
    result = json.loads(out.read_text())

    assert code == 0, result.get("error")
    assert images["train"] == "image-classification-transformers:latest"
    assert {images[f] for f in ("ingest", "evaluate", "compare")} == {
        "image-classification-cpu:latest"
    }
    model_dir = Path(result["summary"]["best"]["model_uri"])
    card = json.loads((model_dir / "model_card.json").read_text())
    assert card["framework"] == "transformers" and card["training"]["epochs_run"] == 1
    assert (model_dir / "hf" / "model.safetensors").stat().st_uid == 1000
