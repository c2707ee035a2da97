"""How a local run's end is judged: stopped, failed (with the step's reason), a gate that
passed without registering, or success."""

from __future__ import annotations

import io
import signal
from pathlib import Path

from components.common.results import EvaluationResult
from components.compare.run import compare
from pipelines.targets.local import TaskObserver, TaskRecord, _outcome
from pipelines.targets.stopping import StopGuard
from pipelines.targets.task_logs import TaskLogs


def summary(gate_min: float) -> dict:
    """A real compare summary, as the pipeline returns it."""
    result = EvaluationResult.model_validate(
        {
            "name": "small-cnn",
            "seed": 0,
            "framework": "keras",
            "model_uri": "/models/small-cnn-0",
            "metrics": {"accuracy": 0.97},
        }
    )
    return dict(compare([result], "accuracy", gate_min).to_output())


def observer(tmp_path: Path, **statuses: str) -> tuple[TaskObserver, TaskLogs]:
    logs = TaskLogs(tmp_path / "logs", io.StringIO())
    tasks = {
        name.replace("_", "-"): TaskRecord(name.replace("_", "-"), status)
        for name, status in statuses.items()
    }
    return TaskObserver(tasks=tasks, logs=logs), logs


def test_a_gate_that_passed_without_registering_fails_the_run(tmp_path: Path) -> None:
    tasks, logs = observer(tmp_path, ingest="SUCCESS", compare="SUCCESS", gate="SUCCESS")
    outcome = _outcome(tasks, logs, StopGuard(), None, summary(0.9))
    assert outcome["status"] == "FAILED"
    assert outcome["error"].startswith("the gate passed but the register step did not run")
    tasks, logs = observer(tmp_path, gate="SUCCESS", register_local="CACHED")
    assert _outcome(tasks, logs, StopGuard(), None, summary(0.9))["status"] == "SUCCEEDED"
    tasks, logs = observer(tmp_path, gate="SUCCESS")
    assert _outcome(tasks, logs, StopGuard(), None, summary(0.99))["status"] == "SUCCEEDED"


def test_a_failed_step_reports_the_exception_in_its_log(tmp_path: Path) -> None:
    tasks, logs = observer(tmp_path, ingest="FAILURE")
    logs.path("ingest").parent.mkdir(parents=True)
    logs.path("ingest").write_text(
        "    Traceback (most recent call last):\n"
        '      File "run.py", line 3, in ingest\n'
        "    components.ingest.sources.SourceError: csv:x.csv does not exist\n\n"
    )
    wrapper = "Pipeline imgclf-x finished with status FAILURE. Inner task failed: 'ingest'."
    outcome = _outcome(tasks, logs, StopGuard(), wrapper, None)
    assert outcome == {
        "status": "FAILED",
        "error": "ingest: csv:x.csv does not exist",
        "failed_step": "ingest",
        "error_log": str(logs.path("ingest")),
    }


def test_a_stop_names_the_running_step(tmp_path: Path) -> None:
    tasks, logs = observer(tmp_path, ingest="SUCCESS", train_keras="SUCCESS")
    tasks.tasks["ingest"].finished = 100.0
    tasks.tasks["train-keras"].finished = 130.0  # logged as a success after it was killed
    guard = StopGuard()
    guard.signal, guard.at = signal.SIGTERM, 120.0
    outcome = _outcome(tasks, logs, guard, "Inner task failed", None)
    assert outcome["status"] == "STOPPED" and outcome["exit_code"] == 143
    assert outcome["stopped_steps"] == ["train-keras"]
    assert outcome["error"].startswith(
        "stopped by SIGTERM during train-keras; run the same command"
    )
