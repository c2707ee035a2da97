"""Ctrl-C during a `--runner docker` run ends the step's container, not only the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipelines.targets.local.target import CONTAINER_LABEL

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]
DEADLINE_S = 300


def running(client: Any, experiment: str) -> list[Any]:
    return client.containers.list(filters={"label": f"{CONTAINER_LABEL}={experiment}"})


def test_ctrl_c_stops_the_running_step_container(
    built_image: Callable[[str], str], docker_client: Any, tmp_path: Path
) -> None:
    built_image("cpu")
    command = [sys.executable, str(REPO / "pipelines" / "submit.py"), "--experiment", "digits"]
    command += ["--runner", "docker", "--runs-dir", str(tmp_path / "runs"), "--no-cache"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = err = ""
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + DEADLINE_S
        while not running(docker_client, "digits") and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[1][-2000:]
            time.sleep(0.5)
        assert running(docker_client, "digits"), "no step container started"

        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=DEADLINE_S)
    finally:
        if process.poll() is None:
            process.kill()

    assert process.returncode == 130, err[-2000:]
    assert "stopped by SIGINT" in out + err
    deadline = time.monotonic() + 60
    while running(docker_client, "digits") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert running(docker_client, "digits") == []
