"""The CLI as a user runs it, in its own process: a stop leaves no step process behind, and a
killed run resumes training where it was killed, for Keras and transformers alike."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import yaml

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 900.0  # generous: a shared CPU may be slow, and nothing here waits on time itself
POLL = 0.1


class Cli:
    """`python pipelines/submit.py ARGS` in a session of its own; stderr read line by line."""

    def __init__(self, args: list[str], cwd: Path):
        # One thread per step: the same arithmetic in every run, and less load on a shared CPU.
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "OMP_NUM_THREADS": "1",
        }
        self.process = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "pipelines" / "submit.py"), *args],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._seen = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._seen:
                self.lines.append(line.rstrip("\n"))
                self._seen.notify_all()

    def wait_for_line(self, pattern: str) -> re.Match[str]:
        """Block until a stderr line matches `pattern` (or fail at the deadline)."""
        compiled = re.compile(pattern)
        end = time.monotonic() + DEADLINE
        with self._seen:
            checked = 0
            while True:
                for line in self.lines[checked:]:
                    if match := compiled.search(line):
                        return match
                checked = len(self.lines)
                assert self.process.poll() is None, "\n".join(self.lines[-40:])
                assert time.monotonic() < end, f"no line matching {pattern!r}"
                self._seen.wait(POLL)

    def finish(self) -> tuple[int, str, str]:
        # not communicate(): it would read stderr too, away from the reader thread
        assert self.process.stdout is not None
        stdout = self.process.stdout.read()
        self.process.wait(timeout=DEADLINE)
        self._reader.join(timeout=DEADLINE)
        return self.process.returncode, stdout, "\n".join(self.lines)

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)


def wait_until(condition: Callable[[], bool]) -> None:
    end = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < end, "condition not reached before the deadline"
        time.sleep(POLL)  # polling a state, not waiting for one to come about by itself


def digits_args(runs: Path, epochs: int, *extra: str) -> list[str]:
    return [
        "--experiment",
        "digits",
        "--runs-dir",
        str(runs),
        "--json",
        "--verbose",  # the steps' own output on stderr: the kills wait for Keras' epoch lines
        "--set",
        "data.image_size=[32,32]",  # slower epochs: a kill lands inside one
        "--set",
        f"models.0.epochs={epochs}",
        "--set",
        "models.0.early_stopping_patience=null",
        "--set",
        "gate.min=0.0",
        *extra,
    ]


@pytest.mark.parametrize(
    ("signum", "code", "to_group"),
    [
        (signal.SIGINT, 130, False),
        (signal.SIGTERM, 143, False),
        (signal.SIGHUP, 129, False),
        (signal.SIGTERM, 143, True),
    ],
)
def test_a_signal_stops_every_step_and_says_how_to_resume(
    tmp_path: Path, signum: int, code: int, to_group: bool
) -> None:
    runs = tmp_path / "runs"
    cli = Cli(digits_args(runs, 40), tmp_path)
    cli.wait_for_line(r"Epoch 2/40")
    steps = cli.descendants()
    assert steps, "the training step runs as a child of the CLI"
    if to_group:  # as a terminal's Ctrl-C or `kill -- -PGID` sends it
        os.killpg(cli.process.pid, signum)
    else:  # the CLI only, as `kill`, `timeout` or a supervisor sends it
        os.kill(cli.process.pid, signum)
    returncode, stdout, stderr = cli.finish()
    assert returncode == code
    _, alive = psutil.wait_procs(steps, timeout=DEADLINE)
    assert not alive, f"step processes left running: {alive}"
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    result = json.loads(stdout)
    assert result["status"] == "STOPPED" and result["exit_code"] == code
    assert [s for s in result["stopped_steps"] if s.startswith("train")], result["tasks"]
    name = signal.Signals(signum).name
    assert result["error"].startswith(f"stopped by {name} during train")
    # the console calls the step stopped, not failed
    assert re.search(r"\] train small-cnn seed 0 \.\.\. stopped after \d", stderr), stderr[-4000:]
    assert not [line for line in stderr.splitlines() if line.startswith("[") and "FAILED" in line]
    statuses = {t["label"]: t["status"] for t in result["tasks"]}
    assert statuses["train small-cnn seed 0"] == "STOPPED"
    assert "run the same command again to resume" in result["error"]
    # kfp.local's cache holds the step that finished (ingest) and nothing of the stopped one
    entries = [json.loads(p.read_text()) for p in (runs / "digits" / ".kfp_cache").glob("*.json")]
    assert [sorted(entry) for entry in entries] == [
        ["dataset", "fingerprint", "num_classes", "num_examples", "quarantine", "report"]
    ], entries


def kill_run_at_epoch(cli: Cli, epoch: int, epochs: int) -> None:
    """SIGKILL the CLI and its steps together, as a crash or the OOM killer would."""
    cli.wait_for_line(rf"Epoch {epoch}/{epochs}\b")
    steps = cli.descendants()
    os.killpg(cli.process.pid, signal.SIGKILL)
    cli.finish()
    _, alive = psutil.wait_procs(steps, timeout=DEADLINE)
    assert not alive


def resumed_run(args: list[str], tmp_path: Path, name: str, epochs: int) -> dict[str, Any]:
    """Rerun the same command; check it resumes, and trains only the epochs left."""
    cli = Cli(args, tmp_path)
    returncode, stdout, stderr = cli.finish()
    assert returncode == 0, stderr[-4000:]
    match = re.search(rf"resuming {name} seed 0 at epoch (\d+)/{epochs}\b", stderr)
    assert match, stderr[-4000:]
    start = int(match[1])
    assert 2 < start <= epochs
    # ... and the console's line for the task says so too, not only the task's log
    assert f"train {name} seed 0 ... resuming at epoch {start}/{epochs}" in stderr
    trained = [int(e) for e in re.findall(rf"Epoch (\d+)/{epochs}\b", stderr)]
    assert trained == list(range(start, epochs + 1))  # no epoch repeated
    result = json.loads(stdout)
    steps = {t["name"]: t["status"] for t in result["tasks"]}
    assert steps["ingest"] == "CACHED"
    result["resumed_at"] = start
    return dict(result)


def card(result: dict[str, Any]) -> dict[str, Any]:
    path = Path(result["summary"]["best"]["model_uri"]) / "model_card.json"
    return dict(json.loads(path.read_text()))


def test_keras_training_killed_mid_run_resumes_at_the_killed_epoch(tmp_path: Path) -> None:
    epochs = 8
    args = digits_args(tmp_path / "runs", epochs)
    kill_run_at_epoch(Cli(args, tmp_path), 3, epochs)
    resumed = resumed_run(args, tmp_path, "small-cnn", epochs)
    history = card(resumed)["history"]
    assert len(history["loss"]) == epochs  # the epochs before the kill are kept, not redone

    uninterrupted = Cli(digits_args(tmp_path / "uninterrupted", epochs), tmp_path)
    returncode, stdout, _ = uninterrupted.finish()
    assert returncode == 0
    uninterrupted_result = json.loads(stdout)
    reference = card(uninterrupted_result)["history"]
    assert sorted(history) == sorted(reference)
    assert len(reference["loss"]) == epochs
    # the epochs before the kill are the same computation as in an uninterrupted run
    kept = resumed["resumed_at"] - 1
    assert np.allclose(history["loss"][:kept], reference["loss"][:kept], rtol=1e-4)
    # after the resume, tf.data's shuffle order restarts, so the rest is close, not identical
    ours = resumed["summary"]["best"]["metrics"]["accuracy"]
    theirs = uninterrupted_result["summary"]["best"]["metrics"]["accuracy"]
    assert abs(ours - theirs) < 0.15


def pets_like(folder: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, level in (("dark", 50), ("bright", 205)):
        (folder / name).mkdir(parents=True)
        for index in range(40):
            pixels = np.clip(rng.normal(level, 25, (32, 32, 3)), 0, 255).astype("uint8")
            Image.fromarray(pixels).save(folder / name / f"{index}.png")
    return folder


def test_transformers_training_killed_mid_run_resumes_and_ends_as_uninterrupted(
    tmp_path: Path, tiny_hf_checkpoint: Callable[..., Path]
) -> None:
    pytest.importorskip("transformers")
    epochs = 6
    experiment = {
        "name": "resume-vit",
        "reference": {"metric": "accuracy", "value": 0.9},
        "data": {
            "source": f"folder:{pets_like(tmp_path / 'images')}",
            "image_size": [32, 32],
            "splits": {"validation": 0.2, "test": 0.2},
        },
        "models": [
            {
                "name": "tiny-vit",
                "framework": "transformers",
                "checkpoint": str(tiny_hf_checkpoint(tmp_path / "vit", "vit")),
                "epochs": epochs,
                "batch_size": 4,
                "optimizer": {"name": "adamw", "learning_rate": 1.0e-3},
            }
        ],
        "gate": {"metric": "accuracy", "min": 0.0},
    }
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(experiment))

    def args(runs: str) -> list[str]:
        return ["--experiment", str(path), "--runs-dir", str(tmp_path / runs), "--json", "-v"]

    kill_run_at_epoch(Cli(args("runs"), tmp_path), 3, epochs)
    resumed = resumed_run(args("runs"), tmp_path, "tiny-vit", epochs)
    returncode, stdout, _ = Cli(args("uninterrupted"), tmp_path).finish()
    assert returncode == 0
    reference = json.loads(stdout)
    history, expected = card(resumed)["history"], card(reference)["history"]
    assert len(history["loss"]) == epochs
    for metric in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert np.allclose(history[metric], expected[metric], rtol=1e-4, atol=1e-6), metric
    ours, theirs = resumed["summary"]["best"]["metrics"], reference["summary"]["best"]["metrics"]
    assert ours["accuracy"] == pytest.approx(theirs["accuracy"], abs=1e-6)
