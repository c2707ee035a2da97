"""What the README and `make clean` tell a user matches what runs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from pipelines.cli import main

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def top_diagram() -> str:
    """The README's first code block: the pipeline at a glance."""
    match = re.search(r"```\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert match, "the README opens with a diagram of the pipeline"
    return match.group(1)


def step_names(compiled: dict) -> set[str]:
    """The steps of a compiled pipeline, by the words the console shows: `ingest`, `best model`,
    `suggest` (of `search lenet5 1/4: suggest`), `train` (of `train lenet5 (search winner)`)."""
    names = set()

    def walk(dag: dict) -> None:
        for task in dag.get("tasks", {}).values():
            shown = task["taskInfo"]["name"]
            if "componentRef" in task:
                inner = compiled["components"][task["componentRef"]["name"]]
                if "dag" in inner:
                    walk(inner["dag"])
                    continue
            shown = shown.rsplit(": ", 1)[-1]  # search rounds: `search <name> i/n: <step>`
            names.add(shown if shown == "best model" else shown.split()[0])

    walk(compiled["root"]["dag"])
    return names


def test_the_top_diagram_names_every_step_that_runs(tmp_path: Path) -> None:
    compiled = tmp_path / "mnist.yaml"
    # a searched candidate adds suggest, trial and tell; an export section the export step
    search = (
        "models.0.search={trials: 4, space: {optimizer.learning_rate: {log_uniform: [1e-4, 1e-2]}}}"
    )
    argv = ["--experiment", "mnist", "--set", search, "--set", "export.formats=[onnx]"]
    argv += ["--compile-only"]
    assert main([*argv, str(compiled)]) == 0
    steps = step_names(yaml.safe_load(compiled.read_text()))

    assert {"ingest", "suggest", "trial", "tell", "best model", "export", "register"} <= steps
    diagram = top_diagram()
    assert [step for step in sorted(steps) if step not in diagram] == []


def test_the_failing_step_log_path_is_where_the_console_writes_logs() -> None:
    from pipelines.targets.local.capture import LOGS_DIR

    text = README.read_text(encoding="utf-8")
    named = re.findall(r"`(runs/<experiment>/[^`]*\.log)`", text)
    assert named, "the README says where a failed step's log is"
    # a run folder per run, `latest` linking the last: runs/<experiment>/<run>/logs/<step>.log
    assert all(path == f"runs/<experiment>/<run>/{LOGS_DIR}/<step>.log" for path in named), named


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_clean_keeps_the_registry(tmp_path: Path) -> None:
    (tmp_path / "runs" / "registry" / "digits-classifier" / "v1").mkdir(parents=True)
    (tmp_path / "runs" / "registry" / "digits-classifier" / "v1" / "model_card.json").write_text(
        "{}"
    )
    (tmp_path / "runs" / "digits" / "run-1").mkdir(parents=True)
    (tmp_path / "runs" / "digits" / "latest").symlink_to("run-1")
    (tmp_path / "build" / "compiled").mkdir(parents=True)

    done = subprocess.run(
        ["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), "clean"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert (
        tmp_path / "runs" / "registry" / "digits-classifier" / "v1" / "model_card.json"
    ).exists()
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["registry"]
    assert not (tmp_path / "build").exists()
    assert "kept runs/registry" in done.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_clean_without_runs_is_quiet(tmp_path: Path) -> None:
    done = subprocess.run(
        ["make", "--no-print-directory", "-s", "-f", str(ROOT / "Makefile"), "clean"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr
