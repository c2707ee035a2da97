"""The local cache follows the data: a changed folder re-runs ingest, an unchanged one is cached;
a failing step's own message reaches `--json`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from pipelines.cli import EXIT_FAILED, EXIT_USAGE, main

pytestmark = pytest.mark.e2e

LEVELS = {"dark": 40, "mid": 128, "bright": 215}


def image(path: Path, level: int, seed: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.normal(level, 12, (12, 12, 3)), 0, 255).astype("uint8")
    Image.fromarray(pixels).save(path)


def write_class(root: Path, name: str, level: int, count: int = 12) -> None:
    (root / name).mkdir(parents=True)
    for index in range(count):
        image(root / name / f"{index}.png", level, seed=level * 1000 + index)


def experiment_file(folder: Path, images: Path) -> Path:
    experiment = {
        "name": "cache-follows-data",
        "reference": {"metric": "accuracy", "value": 0.5},
        "data": {
            "source": f"folder:{images}",
            "image_size": [12, 12],
            "splits": {"validation": 0.2, "test": 0.25},
        },
        "models": [
            {"name": "tiny-cnn", "architecture": "small_cnn", "epochs": 1, "batch_size": 16}
        ],
        "gate": {"metric": "accuracy", "min": 0.0},
    }
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(experiment))
    return path


def run(
    experiment: Path, runs: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, dict[str, Any], str]:
    code = main(["--experiment", str(experiment), "--runs-dir", str(runs), "--json", *extra])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def ingest_status(result: dict[str, Any]) -> str:
    return {t["name"]: t["status"] for t in result["tasks"]}["ingest"]


def class_names(result: dict[str, Any]) -> list[str]:
    card = Path(result["summary"]["best"]["model_uri"]) / "model_card.json"
    return list(json.loads(card.read_text())["class_names"])


def test_changed_data_reruns_ingest_and_unchanged_data_hits_the_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, runs = tmp_path / "images", tmp_path / "runs"
    for name in ("dark", "bright", "mid"):
        write_class(images, name, LEVELS[name])
    experiment = experiment_file(tmp_path, images)

    code, first, err = run(experiment, runs, capsys)
    assert code == 0, first["error"]
    assert ingest_status(first) == "SUCCESS"
    assert "data snapshot " in err and " 36 files, " in err

    code, unchanged, _ = run(experiment, runs, capsys)
    assert code == 0 and ingest_status(unchanged) == "CACHED"
    steps = {t["name"]: t["status"] for t in unchanged["tasks"]}
    assert {steps[s] for s in ("ingest", "train", "evaluate", "compare")} == {"CACHED"}

    image(images / "dark" / "extra.png", LEVELS["dark"], seed=99)  # add a file
    code, added, err = run(experiment, runs, capsys)
    assert code == 0 and ingest_status(added) == "SUCCESS"
    assert " 37 files, " in err

    touched = images / "mid" / "0.png"
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5 * 10**9))  # touch a file
    code, retouched, _ = run(experiment, runs, capsys)
    assert code == 0 and ingest_status(retouched) == "SUCCESS"

    write_class(images, "white", 250)  # add a class
    # the registry keeps the model's meaning: a 4-class version of a 3-class model is refused
    # before anything runs (the added and touched files made versions v2 and v3)
    code = main(["--experiment", str(experiment), "--runs-dir", str(runs), "--json"])
    refused = capsys.readouterr()
    assert code == EXIT_USAGE and refused.out == ""
    assert "v3 predicts 3 classes and this model 4 (new: white)" in refused.err
    assert "data snapshot" not in refused.err
    code, grown, _ = run(experiment, runs, capsys, "--set", "register.allow_class_change=true")
    assert code == 0 and ingest_status(grown) == "SUCCESS"
    assert class_names(first) == ["bright", "dark", "mid"]
    # each training's folder is also linked as <candidate>-seed<k>: one card, two paths
    (card,) = {p.resolve() for p in Path(grown["run_dir"]).glob("*/train/model/model_card.json")}
    assert json.loads(card.read_text())["class_names"] == ["bright", "dark", "mid", "white"]
    assert grown["registration"]["version"] == "v4"


def test_a_failed_step_reports_its_own_exception_in_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = tmp_path / "images"
    write_class(images, "dark", LEVELS["dark"])
    # image names, but no image inside: only decoding (in ingest) can tell
    (images / "broken").mkdir()
    for index in range(3):
        (images / "broken" / f"{index}.png").write_bytes(b"not a png")
    code, result, err = run(experiment_file(tmp_path, images), tmp_path / "runs", capsys)
    assert code == EXIT_FAILED
    assert result["status"] == "FAILED" and result["failed_step"] == "ingest"
    assert result["error"].startswith("ingest: classes below data.min_images_per_class=1")
    assert "'broken' (0)" in result["error"]
    assert "Inner task failed" not in result["error"]
    log = Path(result["error_log"])
    assert log.is_file() and "Traceback" in log.read_text()
    # the quiet console names the step's log instead of streaming the traceback
    assert "Traceback" not in err and str(log) in err


def test_the_summary_ends_with_the_failing_steps_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = tmp_path / "images"
    write_class(images, "dark", LEVELS["dark"])
    (images / "broken").mkdir()
    (images / "broken" / "0.png").write_bytes(b"not a png")
    argv = [
        "--experiment",
        str(experiment_file(tmp_path, images)),
        "--runs-dir",
        str(tmp_path / "runs"),
    ]
    assert main(argv) == EXIT_FAILED
    lines = capsys.readouterr().out.rstrip().splitlines()
    assert lines[-1].startswith("error: ingest: classes below data.min_images_per_class=1")
    assert lines[-2].startswith("full log of ingest: ") and lines[-2].endswith("ingest.log")
