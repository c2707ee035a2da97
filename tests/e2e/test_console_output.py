"""What a person sees: a digits run with two seeds, its output going to a file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 60


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.links.append(href)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, dict]:
    runs = tmp_path_factory.mktemp("runs")
    output = runs / "console.txt"
    command = [
        sys.executable,
        "-m",
        "pipelines.submit",
        "--experiment",
        "digits",
        "--runs-dir",
        str(runs),
        "--set",
        "seeds=[0,1]",
        "--set",
        "models.0.epochs=3",
        "--set",
        "gate.min=0.5",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with output.open("w") as handle:
        code = subprocess.run(
            command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, env=env, check=False
        ).returncode
    text = output.read_text()
    assert code == 0, text
    again = subprocess.run(
        [*command, "--json"], cwd=ROOT, capture_output=True, text=True, env=env, check=False
    )
    assert again.returncode == 0, again.stderr
    return text, runs, json.loads(again.stdout)


def test_the_console_is_short_plain_and_names_every_task(run: tuple[str, Path, dict]) -> None:
    text, _, _ = run
    lines = text.splitlines()
    assert len(lines) <= MAX_LINES, text
    assert "\x1b" not in text
    assert "executor_input" not in text and "KFP Executor" not in text
    assert not any(line.lstrip().startswith(("{", '"')) for line in lines), text
    assert lines[-1].startswith("results: ") and any(
        line.startswith("experiment digits on local: SUCCEEDED") for line in lines
    ), text
    train_lines = [line for line in lines if re.match(r"\[\d+/9\] train ", line)]
    assert any("train small-cnn seed 1 ... done in" in line for line in train_lines), text
    assert any("train small-cnn seed 0 ... done in" in line for line in train_lines), text
    assert any(re.search(r"best val_accuracy 0\.\d{4} at epoch \d", line) for line in train_lines)


def test_the_run_folder_links_reports_logs_and_tensorboard(run: tuple[str, Path, dict]) -> None:
    text, _, _ = run
    index = Path(re.search(r"^results: (.+index\.html)$", text, re.M)[1])
    run_dir = index.parent
    parser = _Links()
    parser.feed(index.read_text())
    reports = [run_dir / link for link in parser.links if link.endswith(".html")]
    assert len(reports) >= 4 and all(p.is_file() for p in reports), parser.links
    assert {"data.html", "comparison.html", "curves-small-cnn-seed1.html"} <= {
        p.name for p in reports
    }
    logs = [run_dir / link for link in parser.links if link.endswith(".log")]
    assert any(p.name == "train-small-cnn-seed1.log" for p in logs)
    assert all(p.is_file() for p in logs)
    train_log = (run_dir / "logs" / "train-small-cnn-seed1.log").read_text()
    assert "executor_input" in train_log and "Epoch 3/3" in train_log
    assert "ran out of data" not in train_log
    for seed in (0, 1):
        events = list(
            (run_dir / "tensorboard" / f"small-cnn-seed{seed}").rglob("events.out.tfevents.*")
        )
        assert events, f"no TensorBoard events for seed {seed}"
        assert (run_dir / f"small-cnn-seed{seed}").is_dir()


def test_a_cached_rerun_still_returns_its_folder_and_reports(run: tuple[str, Path, dict]) -> None:
    _, runs, again = run
    assert all(t["cached"] for t in again["tasks"] if t["name"] in ("ingest", "train", "evaluate"))
    assert len([t for t in again["tasks"] if t["name"] == "train"]) == 2
    run_dir = Path(again["run_dir"])
    assert Path(again["index"]).is_file() and Path(again["index"]).parent == run_dir
    names = {Path(p).name for p in again["reports"]}
    assert {
        "data.html",
        "evaluation-small-cnn-seed0.html",
        "evaluation-small-cnn-seed1.html",
    } <= names
    assert all(Path(p).is_file() and Path(p).parent == run_dir for p in again["reports"])
    assert again["tensorboard"] and (runs / "digits" / "latest").resolve() == run_dir.resolve()
    assert again["summary"]["best"]["seed"] in (0, 1)
    assert isinstance(again["summary"]["rows"][0]["seeds"], int)
    assert again["data"]["kept"] == 1797 and again["data"]["quarantined"] == 0
