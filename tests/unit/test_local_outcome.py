"""How a local run's end is judged: stopped, failed (with the step's reason), a gate that
passed without registering, or success."""

from __future__ import annotations

import signal
from pathlib import Path

from components.common.results import EvaluationResult
from components.compare.run import compare
from pipelines.targets.local.outcome import run_outcome
from pipelines.targets.local.stopping import StopGuard
from pipelines.targets.local.tasks import TaskRecord


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


def records(tmp_path: Path, **statuses: str) -> dict[str, TaskRecord]:
    """Console records of finished tasks by name; status CACHED is a cache hit."""
    tasks = {}
    for number, (name, status) in enumerate(statuses.items(), start=1):
        name = name.replace("_", "-")
        tasks[name] = TaskRecord(
            name,
            name,
            number,
            tmp_path,
            status="SUCCESS" if status == "CACHED" else status,
            cached=status == "CACHED",
            log=tmp_path / "logs" / f"{name}.log",
        )
    return tasks


def test_a_gate_that_passed_without_registering_fails_the_run(tmp_path: Path) -> None:
    tasks = records(tmp_path, ingest="SUCCESS", compare="SUCCESS", gate="SUCCESS")
    outcome = run_outcome(list(tasks.values()), StopGuard(), None, summary(0.9))
    assert outcome["status"] == "FAILED"
    assert outcome["error"].startswith("the gate passed but the register step did not run")
    tasks = records(tmp_path, gate="SUCCESS", register_local="CACHED")
    assert (
        run_outcome(list(tasks.values()), StopGuard(), None, summary(0.9))["status"] == "SUCCEEDED"
    )
    tasks = records(tmp_path, gate="SUCCESS")
    assert (
        run_outcome(list(tasks.values()), StopGuard(), None, summary(0.99))["status"] == "SUCCEEDED"
    )


def test_a_failed_step_reports_the_exception_in_its_log(tmp_path: Path) -> None:
    tasks = records(tmp_path, ingest="FAILURE")
    log = tasks["ingest"].log
    assert log is not None
    log.parent.mkdir(parents=True)
    log.write_text(
        "    Traceback (most recent call last):\n"
        '      File "run.py", line 3, in ingest\n'
        "    components.ingest.sources.SourceError: csv:x.csv does not exist\n\n"
    )
    wrapper = "Pipeline imgclf-x finished with status FAILURE. Inner task failed: 'ingest'."
    outcome = run_outcome(list(tasks.values()), StopGuard(), wrapper, None)
    assert outcome == {
        "status": "FAILED",
        "error": "ingest: csv:x.csv does not exist",
        "failed_step": "ingest",
        "error_log": str(log),
    }


def test_a_stop_names_the_running_step(tmp_path: Path) -> None:
    tasks = records(tmp_path, ingest="SUCCESS", train_keras="SUCCESS")
    tasks["ingest"].finished = 100.0
    tasks["train-keras"].finished = 130.0  # logged as a success after it was killed
    guard = StopGuard()
    guard.signal, guard.at = signal.SIGTERM, 120.0
    outcome = run_outcome(list(tasks.values()), guard, "Inner task failed", None)
    assert outcome["status"] == "STOPPED" and outcome["exit_code"] == 143
    assert outcome["stopped_steps"] == ["train-keras"]
    assert outcome["error"].startswith(
        "stopped by SIGTERM during train-keras; run the same command"
    )
