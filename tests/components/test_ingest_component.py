"""The ingest component through kfp.local: a thin wrapper whose outputs carry the artifacts."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from kfp import local
from PIL import Image

from components.common.results import DATASET_INFO_FILE
from components.ingest.component import ingest


def _images(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for index in range(12):
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(
                buffer, format="JPEG"
            )
            (root / label / f"{index}.jpg").write_bytes(buffer.getvalue())
    (root / "cat" / "zero-bytes.jpg").write_bytes(b"")
    (root / "dog" / "notes.jpg").write_text("not a picture")
    return root


# The local runner warns that our base image is not a Python image; the test runs in this venv.
@pytest.mark.filterwarnings("ignore:You may be attemping to run a task:RuntimeWarning")
def test_the_component_writes_dataset_quarantine_and_report(tmp_path: Path) -> None:
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    root = _images(tmp_path / "images")
    task = ingest(
        data_config={"source": f"folder:{root}", "splits": {"validation": 0.2, "test": 0.2}}
    )

    dataset, quarantine, report = (
        task.outputs[name] for name in ("dataset", "quarantine", "report")
    )
    info = json.loads((Path(dataset.path) / DATASET_INFO_FILE).read_text())
    assert task.outputs["fingerprint"] == info["fingerprint"] == dataset.metadata["fingerprint"]
    assert task.outputs["num_classes"] == 2 and dataset.metadata["class_names"] == ["cat", "dog"]
    assert sum(task.outputs["num_examples"].values()) == 24
    with open(quarantine.path) as file:
        rows = {row["key"]: row["reason"].split(":")[0] for row in csv.DictReader(file)}
    assert rows == {"cat/zero-bytes.jpg": "empty", "dog/notes.jpg": "not an image"}
    assert quarantine.metadata["count"] == 2
    assert quarantine.metadata["reasons"] == {"empty": 1, "not an image": 1}
    assert "Images per split and class" in Path(report.path).read_text()
