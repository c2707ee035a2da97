"""How a local run ended, from its task records: the status, error and exit code the CLI
reports, the verdict index.html heads with, and the rows of the run's result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components.common.names import run_name
from components.common.results import CompareSummary, RegistrationRecord
from components.compare.run import failure_lines
from components.register.run import champion_decision
from pipelines.errors import EXIT_PARTIAL
from pipelines.failures import failure
from pipelines.targets.local.results import Verdict, failed_run_line
from pipelines.targets.local.stopping import StopGuard
from pipelines.targets.local.tasks import TaskRecord


def index_verdict(
    outcome: dict[str, Any],
    seconds: float,
    summary: dict[str, Any] | None,
    registration: dict[str, Any] | None,
    tasks: list[TaskRecord],
) -> Verdict:
    """How index.html heads: the outcome as the CLI reports it (a missed gate included)."""
    compared = CompareSummary.model_validate(summary) if summary else None
    status = outcome["status"]
    if status in ("SUCCEEDED", "PARTIAL") and compared is not None and not compared.gate.passed:
        status = "GATE MISSED"
    record = RegistrationRecord.model_validate(registration) if registration else None
    return Verdict(
        status=status,
        seconds=seconds,
        registered=f"{record.name} {record.version} at {record.path}" if record else None,
        gate=compared.gate.message if compared else None,
        error=outcome.get("error"),
        error_log=outcome.get("error_log"),
        failed_runs=[failed_run_line(t) for t in tasks if t.goes_on]
        or (failure_lines(compared) if compared else []),
        champion=champion_decision(record) if record and not record.existing else None,
    )


def compared_summary(tasks: list[TaskRecord]) -> dict[str, Any] | None:
    """The compare step's summary from its task, when it succeeded in a run that failed
    (kfp.local then returns no pipeline output)."""
    task = next((t for t in tasks if t.name == "compare" and t.status == "SUCCESS"), None)
    output = task.outputs.get("summary") if task is not None else None
    return CompareSummary.model_validate(output).to_output() if output else None


def best_model_link(run_dir: Path, summary: dict[str, Any] | None) -> str | None:
    """The best model through its run's `<candidate>-seed<k>` link in the results folder."""
    if not summary:
        return None
    best = CompareSummary.model_validate(summary).best
    model = Path(best.model_uri)
    link = run_dir / run_name(best.name, best.seed)
    if link.is_dir() and link.resolve() == model.parent.parent.resolve():
        return str(link / model.parent.name / model.name)
    return None


def task_row(task: TaskRecord) -> dict[str, Any]:
    return {
        "name": task.name,
        "step": task.step,
        "candidate": task.candidate,
        "seed": task.seed,
        "label": task.label,
        "status": "CACHED" if task.cached else task.status,
        "cached": task.cached,
        # a cached task: the time of the run that ran it (None when that is not known)
        "seconds": None if task.ran_seconds is None else round(task.ran_seconds, 2),
        "log": str(task.log) if task.log else None,
        "figure": task.figure,
    }


def run_outcome(
    tasks: list[TaskRecord],
    guard: StopGuard,
    error: str | None,
    summary: dict[str, Any] | None,
) -> dict[str, Any]:
    """status, error and where to read more: a stop, a failed step (its own exception), a gate
    that passed without registering, or success."""
    if guard.signal is not None:
        # kfp.local may log a killed step as SUCCESS: a step still running, or ending after the
        # signal, is one the stop ended.
        at = guard.at or 0.0
        running = [
            t.label for t in tasks if t.status == "RUNNING" or (not t.cached and t.finished >= at)
        ]
        where = f"during {', '.join(running)}" if running else "between steps"
        return {
            "status": "STOPPED",
            "error": f"stopped by {guard.signal.name} {where}; run the same command "
            "again to resume (finished steps come from the cache, training from its checkpoints)",
            "exit_code": guard.exit_code,
            "stopped_steps": running,
        }
    failed = [t for t in tasks if t.status == "FAILURE"]
    if error is not None and summary is not None and failed and all(t.goes_on for t in failed):
        # compare.on_failure: continue. Every target counts the run failed (a task failed);
        # the others were compared, and past the gate the best of them is registered.
        return {
            "status": "PARTIAL",
            "error": f"{len(failed)} task(s) failed ({', '.join(t.label for t in failed)}); "
            "the other candidates were compared; rerun to retry them (no cache keeps a failure)",
            "exit_code": EXIT_PARTIAL,
        }
    if error is not None:
        first = next((t for t in failed if not t.goes_on), None) or next(iter(failed), None)
        if first is None:
            return {"status": "FAILED", "error": error}
        failed_task = first
        reason = failure(failed_task.label, failed_task.log, error)
        return {
            "status": "FAILED",
            "error": reason.error,
            "failed_step": failed_task.label,
            "error_log": reason.log,
        }
    registered = any(t.name.startswith("register") for t in tasks)
    gate = CompareSummary.model_validate(summary).gate if summary else None
    if gate is not None and gate.passed and not registered:
        # kfp.local counts a condition it fails to evaluate as False, with only a log line.
        return {
            "status": "FAILED",
            "error": f"the gate passed but the register step did not run: {gate.message}; "
            "nothing was registered (see the gate-passed condition in the log)",
        }
    return {"status": "SUCCEEDED", "error": None}
