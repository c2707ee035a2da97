"""The `local` target: the whole pipeline through kfp.local in this Python environment."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kfp import local

from components.common.results import CompareSummary
from components.register.run import find_registration
from pipelines.targets.base import Target
from pipelines.targets.console import ANSI, Capture, Console, TaskRecord
from pipelines.targets.results import task_figure, write_results


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
        with Console(self.expected_tasks(), verbose=self.options.verbose) as console:
            capture = Capture(console, root, figure=task_figure)
            try:
                with capture.installed():
                    output = pipeline().output
                # kfp.local hands the summary over with its ints as floats; the typed
                # result turns them back (seed 0, not 0.0)
                summary = CompareSummary.model_validate(output).to_output() if output else None
            except RuntimeError as exc:
                error = ANSI.sub("", str(exc))
        results = (
            write_results(capture.run_dir, self.experiment.name, console.tasks)
            if capture.run_dir is not None
            else None
        )
        return {
            "experiment": self.experiment.name,
            "target": self.name,
            "status": "FAILED" if error else "SUCCEEDED",
            "error": error,
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
            "registration": self._registration(summary),
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
