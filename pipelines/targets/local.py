"""The `local` target: the whole pipeline through kfp.local in this Python environment."""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any

from kfp import local

from components.common.results import CompareSummary
from components.register.run import find_registration
from pipelines.failures import failure
from pipelines.targets.base import Target
from pipelines.targets.console import ANSI, Capture, Console, TaskRecord
from pipelines.targets.results import task_figure, write_results
from pipelines.targets.stopping import StopGuard


class LocalTarget(Target):
    name = "local"
    parallelism = 2  # kfp.local runs at most two loop iterations at once

    def pipeline_root(self) -> Path:
        return (self.options.runs_dir / self.experiment.name).resolve()

    def registry_root(self) -> str:
        return str((self.options.runs_dir / "registry").resolve())

    def expected_tasks(self) -> int:
        """ingest, train and evaluate per candidate x seed, compare, gate, best model,
        export (when the experiment has an export section), register."""
        export = 1 if self.experiment.export is not None else 0
        return 1 + 2 * len(self.experiment.candidates()) + 4 + export

    def checkpoint_root(self) -> str:
        return str(self.pipeline_root() / "checkpoints")

    def run(self) -> dict[str, Any]:
        """Run the pipeline: a line per task on stderr, each step's output in its log file.

        Returns the run summary.
        """
        root = self.pipeline_root()
        root.mkdir(parents=True, exist_ok=True)
        local.init(
            runner=local.SubprocessRunner(use_venv=False),
            pipeline_root=str(root),
            enable_caching=self.options.cache,
            raise_on_error=True,
        )
        pipeline = self.pipeline()
        started = time.time()
        error: str | None = None
        summary: dict[str, Any] | None = None
        guard = StopGuard()
        with Console(self.expected_tasks(), verbose=self.options.verbose) as console:
            capture = Capture(console, root, figure=task_figure)
            try:
                with guard, capture.installed():
                    output = pipeline().output
                # kfp.local hands the summary over with its ints as floats; the typed
                # result turns them back (seed 0, not 0.0)
                summary = CompareSummary.model_validate(output).to_output() if output else None
            except Exception as exc:
                # kfp.local raises RuntimeError for a failed step; after a stop, whatever it raised
                if guard.signal is None and not isinstance(exc, RuntimeError):
                    raise
                error = ANSI.sub("", str(exc))
        results = (
            write_results(capture.run_dir, self.experiment.name, console.tasks)
            if capture.run_dir is not None
            else None
        )
        return {
            "experiment": self.experiment.name,
            "target": self.name,
            **_outcome(console.tasks, guard, error, summary),
            "seconds": round(time.time() - started, 2),
            "pipeline_root": str(root),
            "run_dir": str(results.run_dir) if results else None,
            "index": str(results.index) if results else None,
            "reports": [str(p) for p in results.reports] if results else [],
            "logs": [str(p) for p in results.logs] if results else [],
            "tensorboard": str(results.tensorboard) if results and results.tensorboard else None,
            "data": results.data if results else {},
            "tasks": [_task_row(t) for t in console.tasks],
            "summary": summary,
            "registration": self._registration(summary, started),
        }

    def _registration(self, output: dict[str, Any] | None, started: float) -> dict[str, Any] | None:
        """The folder registry's record of the run's best model, when the gate let it through;
        `existing` when an earlier run registered it (this one found it there)."""
        if not output:
            return None
        summary = CompareSummary.model_validate(output)
        if not summary.gate.passed:
            return None
        root = Path(self.registry_root()) / self.experiment.registration.name
        if not root.is_dir():
            return None
        record = find_registration(root, summary.best.model_uri)
        if record is None:
            return None
        registered = datetime.datetime.fromisoformat(record.registered_at).timestamp()
        # registered_at has whole seconds: a version of this run is at most 1 s "before" it
        return record.model_copy(update={"existing": registered < started - 1}).to_output()


def _task_row(task: TaskRecord) -> dict[str, Any]:
    return {
        "name": task.name,
        "step": task.step,
        "candidate": task.candidate,
        "seed": task.seed,
        "label": task.label,
        "status": "CACHED" if task.cached else task.status,
        "cached": task.cached,
        "seconds": round(task.seconds, 2),
        "log": str(task.log) if task.log else None,
        "figure": task.figure,
    }


def _outcome(
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
    if error is not None:
        failed = next((t for t in tasks if t.status == "FAILURE"), None)
        if failed is None:
            return {"status": "FAILED", "error": error}
        reason = failure(failed.label, failed.log, error)
        return {
            "status": "FAILED",
            "error": reason.error,
            "failed_step": failed.label,
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
