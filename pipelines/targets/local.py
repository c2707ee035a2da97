"""The `local` target: the whole pipeline through kfp.local in this Python environment."""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kfp import local

from components.common.results import CompareSummary
from components.register.run import find_registration
from pipelines.failures import failure
from pipelines.targets.base import Target
from pipelines.targets.stopping import StopGuard
from pipelines.targets.task_logs import TaskLogs

ANSI = re.compile(r"\x1b\[[0-9;]*m")
STARTED = re.compile(r"^Executing task '(?P<task>[^']+)'")
FINISHED = re.compile(r"^Task '(?P<task>[^']+)' finished with status (?P<status>\w+)")
# Folders of the pipeline root that are not runs: the task logs and the training checkpoints.
NOT_RUNS = ("logs", "checkpoints")
CACHE_HIT = re.compile(r"^Task '?(?P<task>[^' ]+)'? cache hit")


@dataclass
class TaskRecord:
    name: str
    status: str = "RUNNING"
    started: float = 0.0
    finished: float = 0.0

    @property
    def seconds(self) -> float:
        return max(self.finished - self.started, 0.0) if self.finished else 0.0


@dataclass
class TaskObserver(logging.Filter):
    """Collects each task's status and duration from kfp.local's log records.

    kfp.local swaps the root logger's handlers around every task, but keeps its filters, so a
    filter on the root logger sees every record it emits.
    """

    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    logs: TaskLogs | None = None

    def __post_init__(self) -> None:
        super().__init__()

    def filter(self, record: logging.LogRecord) -> bool:
        message = ANSI.sub("", str(record.getMessage()))
        if match := STARTED.match(message):
            name = match["task"]
            self.tasks[name] = TaskRecord(name, "RUNNING", record.created)
            if self.logs is not None:
                self.logs.begin(name)
        elif match := CACHE_HIT.match(message):
            task = self.tasks.setdefault(
                match["task"], TaskRecord(match["task"], started=record.created)
            )
            task.status, task.finished = "CACHED", record.created
        elif match := FINISHED.match(message):
            task = self.tasks.setdefault(
                match["task"], TaskRecord(match["task"], started=record.created)
            )
            task.status, task.finished = match["status"], record.created
        return True


class LocalTarget(Target):
    name = "local"
    parallelism = 2  # kfp.local runs at most two loop iterations at once

    def pipeline_root(self) -> Path:
        return (self.options.runs_dir / self.experiment.name).resolve()

    def registry_root(self) -> str:
        return str((self.options.runs_dir / "registry").resolve())

    def checkpoint_root(self) -> str:
        return str(self.pipeline_root() / "checkpoints")

    def run(self) -> dict[str, Any]:
        """Run the pipeline; logs go to stderr. Returns the run summary."""
        root = self.pipeline_root()
        root.mkdir(parents=True, exist_ok=True)
        local.init(
            runner=local.SubprocessRunner(use_venv=False),
            pipeline_root=str(root),
            enable_caching=self.options.cache,
            raise_on_error=True,
        )
        pipeline = self.pipeline()
        logs = TaskLogs(root / "logs" / time.strftime("%Y%m%d-%H%M%S"), sys.stderr)
        observer = TaskObserver(logs=logs)
        root_logger = logging.getLogger()
        level = root_logger.level
        # kfp.local logs cache hits at INFO outside its own logging context.
        root_logger.setLevel(logging.INFO)
        root_logger.addFilter(observer)
        started = time.time()
        error: str | None = None
        output: dict[str, Any] | None = None
        guard = StopGuard()
        try:
            with guard, contextlib.redirect_stdout(logs), warnings.catch_warnings():
                # Locally every step runs in this environment; images and display names
                # matter only on the cluster targets.
                warnings.filterwarnings(
                    "ignore", message=".*have no effect in the current local runner.*"
                )
                warnings.filterwarnings("ignore", message=".*non-Python base image.*")
                output = pipeline().output
        except Exception as exc:
            # kfp.local raises RuntimeError for a failed step; after a stop, whatever it raised
            if guard.signal is None and not isinstance(exc, RuntimeError):
                raise
            error = ANSI.sub("", str(exc))
        finally:
            root_logger.removeFilter(observer)
            root_logger.setLevel(level)
            logs.close_all()
        registration = self._registration(output)
        outcome = _outcome(observer, logs, guard, error, output)
        return {
            "experiment": self.experiment.name,
            "target": self.name,
            **outcome,
            "seconds": round(time.time() - started, 2),
            "pipeline_root": str(root),
            "run_dir": (run_dir := _newest_run_dir(root, started)),
            "reports": _html_reports(run_dir),
            "tasks": [
                {"name": t.name, "status": t.status, "seconds": round(t.seconds, 2)}
                for t in observer.tasks.values()
            ],
            "summary": output,
            "registration": registration,
        }

    def _registration(self, output: dict[str, Any] | None) -> dict[str, Any] | None:
        """The folder registry's record of the run's best model, when the gate let it through."""
        if not output:
            return None
        summary = CompareSummary.model_validate(output)
        if not summary.gate.passed:
            return None
        root = Path(self.registry_root()) / self.experiment.registration.name
        if not root.is_dir():
            return None
        record = find_registration(root, summary.best.model_uri)
        return record.to_output() if record else None


def _outcome(
    observer: TaskObserver,
    logs: TaskLogs,
    guard: StopGuard,
    error: str | None,
    output: dict[str, Any] | None,
) -> dict[str, Any]:
    """status, error and where to read more: a stop, a failed step (its own exception), a gate
    that passed without registering, or success."""
    if guard.signal is not None:
        # kfp.local may log a killed step as SUCCESS: a step still running, or ending after the
        # signal, is one the stop ended.
        at = guard.at or 0.0
        running = [
            t.name
            for t in observer.tasks.values()
            if t.status == "RUNNING" or (t.status != "CACHED" and t.finished >= at)
        ]
        where = f"during {', '.join(running)}" if running else "between steps"
        return {
            "status": "STOPPED",
            "error": f"stopped by {guard.signal.name} {where}; run the same command "
            "again to resume (finished steps come from the cache, training from its checkpoints)",
            "exit_code": guard.exit_code,
            "stopped_steps": running,
        }
    if error is not None:
        failed = next((t.name for t in observer.tasks.values() if t.status == "FAILURE"), None)
        if failed is None:
            return {"status": "FAILED", "error": error}
        reason = failure(failed, logs.path(failed), error)
        return {
            "status": "FAILED",
            "error": reason.error,
            "failed_step": failed,
            "error_log": reason.log,
        }
    registered = any(t.name.startswith("register") for t in observer.tasks.values())
    gate = CompareSummary.model_validate(output).gate if output else None
    if gate is not None and gate.passed and not registered:
        # kfp.local counts a condition it fails to evaluate as False, with only a log line.
        return {
            "status": "FAILED",
            "error": f"the gate passed but the register step did not run: {gate.message}; "
            "nothing was registered (see the gate-passed condition in the log)",
        }
    return {"status": "SUCCEEDED", "error": None}


def _html_reports(run_dir: str | None) -> list[str]:
    """The HTML artifacts (data report, training curves, evaluation and comparison reports)."""
    if run_dir is None:
        return []
    names = {"report", "curves"}
    return sorted(str(p) for p in Path(run_dir).rglob("*") if p.name in names and p.is_file())


def _newest_run_dir(root: Path, since: float) -> str | None:
    runs = [
        p
        for p in root.iterdir()
        if p.is_dir()
        and not p.name.startswith(".")
        and p.name not in NOT_RUNS
        and p.stat().st_mtime >= since - 1
    ]
    return str(max(runs, key=lambda p: p.stat().st_mtime)) if runs else None
