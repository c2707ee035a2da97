"""The train step on two replicas of a multi-node job, as Vertex AI runs it: each replica runs the
step's KFP executor with the same executor input (the same Model and curves paths) and its own
CLUSTER_SPEC, and torchrun joins them at the chief (gloo on 127.0.0.1).

Through a normal end the chief writes the Model and the task's executor output and the worker
leaves without the executor's epilogue (exit code 0, no output file of its own); through a
worker failure the worker's replica fails with the reason and never touches the shared Model
folder.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from components.common.model_card import ModelCard  # noqa: E402
from components.spec import ModelSpec  # noqa: E402

pytestmark = pytest.mark.ddp

STEP_SOURCE = Path(__file__).resolve().parents[2] / "components" / "train" / "component.py"
# Generous: the CI machine is loaded and both replicas import torch and transformers.
DEADLINE_S = 600
CHIEF, WORKER = "workerpool0", "workerpool1"
# On the worker replica's path only: its training process (global rank 1) fails at start-up.
FAILING_RANK = """
import os
if os.environ.get("RANK") == "1":
    raise SystemExit("rank 1 cannot start: its node lost its accelerator")
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def artifact(name: str, schema: str, uri: Path) -> dict[str, Any]:
    return {"artifacts": [{"name": name, "type": {"schemaTitle": schema}, "uri": str(uri)}]}


def executor_input(dataset: Path, spec: ModelSpec, root: Path, output_file: Path) -> str:
    return json.dumps(
        {
            "inputs": {
                "parameterValues": {
                    "candidate": {"model_spec": spec.model_dump(mode="json"), "seed": 0},
                    "checkpoint_root": str(root / "checkpoints"),
                    "fresh": False,
                },
                "artifacts": {"dataset": artifact("dataset", "system.Dataset", dataset)},
            },
            "outputs": {
                "artifacts": {
                    "model": artifact("model", "system.Model", root / "model"),
                    "curves": artifact("curves", "system.HTML", root / "curves.html"),
                },
                "outputFile": str(output_file),
            },
        }
    )


def replica(
    dataset: Path, spec: ModelSpec, root: Path, pool: str, port: int, **env: str
) -> subprocess.Popen[str]:
    """One replica's train step, as the KFP executor of a Vertex AI custom job starts it."""
    cluster = {
        "cluster": {CHIEF: [f"127.0.0.1:{port}"], WORKER: [f"127.0.0.1:{port}"]},
        "task": {"type": pool, "index": 0},
    }
    command = [
        sys.executable,
        "-m",
        "kfp.dsl.executor_main",
        "--component_module_path",
        str(STEP_SOURCE),
        "--function_to_execute",
        "train",
        "--executor_input",
        executor_input(dataset, spec, root, root / f"{pool}-executor_output.json"),
    ]
    environment = {
        **os.environ,
        "CLUSTER_SPEC": json.dumps(cluster),
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    return subprocess.Popen(
        command,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def ended(process: subprocess.Popen[str]) -> tuple[int, str]:
    output, _ = process.communicate(timeout=DEADLINE_S)
    return process.returncode, output


@pytest.fixture
def tiny_vit(
    tmp_path: Path,
    image_dataset: Callable[..., Path],
    tiny_hf_checkpoint: Callable[..., Path],
) -> tuple[Path, ModelSpec]:
    dataset = image_dataset(
        tmp_path / "data", {"dark": 50, "bright": 205}, 12, (20, 28), image_size=(32, 32)
    )
    spec = ModelSpec.model_validate(
        {
            "name": "vit-two-nodes",
            "framework": "transformers",
            "checkpoint": str(tiny_hf_checkpoint(tmp_path / "vit", "vit")),
            "epochs": 1,
            "batch_size": 8,
            "optimizer": {"name": "adamw", "learning_rate": 1e-3},
        }
    )
    return dataset, spec


def test_the_chief_writes_the_outputs_and_the_worker_leaves_without_them(
    tiny_vit: tuple[Path, ModelSpec], tmp_path: Path
) -> None:
    dataset, spec = tiny_vit
    root, port = tmp_path / "task", free_port()
    chief = replica(dataset, spec, root, CHIEF, port)
    worker = replica(dataset, spec, root, WORKER, port)
    (chief_code, chief_log), (worker_code, worker_log) = ended(chief), ended(worker)
    assert chief_code == 0, chief_log[-3000:]
    assert worker_code == 0, worker_log[-3000:]
    assert "training on 2 node(s) x 1 process(es) (node 1, chief 127.0.0.1:" in worker_log
    card = ModelCard.load(root / "model")
    assert card.name == "vit-two-nodes" and card.training["processes"] == 2
    assert (root / "curves.html").is_file()
    # the chief's executor wrote the task's output metadata; the worker's epilogue never ran
    written = json.loads((root / f"{CHIEF}-executor_output.json").read_text())
    assert written["artifacts"]["model"]["artifacts"][0]["metadata"]["name"] == "vit-two-nodes"
    assert not (root / f"{WORKER}-executor_output.json").exists()


def test_a_failed_worker_fails_its_replica_and_leaves_the_model_folder_alone(
    tiny_vit: tuple[Path, ModelSpec], tmp_path: Path
) -> None:
    dataset, spec = tiny_vit
    root, port = tmp_path / "task", free_port()
    # What the chief has written by then: the worker must neither delete nor add to it.
    model = root / "model"
    model.mkdir(parents=True)
    (model / "written-by-the-chief").write_text("chief")
    site = tmp_path / "failing-rank"
    site.mkdir()
    (site / "sitecustomize.py").write_text(FAILING_RANK)
    chief = replica(dataset, spec, root, CHIEF, port)
    worker = replica(
        dataset, spec, root, WORKER, port, PYTHONPATH=os.pathsep.join([str(site), *sys.path])
    )
    worker_code, worker_log = ended(worker)
    # Vertex AI ends a job whose replica failed: the chief, left waiting for rank 1, is stopped.
    os.killpg(chief.pid, signal.SIGTERM)
    deadline = time.monotonic() + DEADLINE_S
    while chief.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    if chief.poll() is None:
        os.killpg(chief.pid, signal.SIGKILL)
    chief.communicate(timeout=DEADLINE_S)
    assert worker_code == 1, worker_log[-3000:]
    assert "the training processes failed (torchrun exit code 1)" in worker_log
    assert "rank 1 cannot start" in worker_log
    assert sorted(p.name for p in model.iterdir()) == ["written-by-the-chief"]
    assert not (root / f"{WORKER}-executor_output.json").exists()
