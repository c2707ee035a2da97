"""The `local` target: the whole pipeline through kfp.local, each step a process in this Python
environment (runner `subprocess`) or a container of its image (runner `docker`: kfp.local's
DockerRunner, as a cluster runs it: the image's own environment, uid 1000, only the pipeline
root mounted)."""

from __future__ import annotations

import contextlib
import datetime
import os
import time
from pathlib import Path
from typing import Any

from kfp import local

from components.common.files import write_json
from components.common.names import run_name
from components.common.results import CompareSummary, RegistrationRecord
from components.compare.run import failure_lines
from components.ingest.sources import kind_of
from components.register.run import champion_decision, find_registration
from pipelines.compare_runs import SUMMARY_FILE
from pipelines.errors import EXIT_PARTIAL
from pipelines.failures import failure
from pipelines.search import search_tasks
from pipelines.targets.base import PreflightError, Target
from pipelines.targets.console import ANSI, Capture, Console, TaskRecord
from pipelines.targets.results import (
    Verdict,
    earlier_seconds,
    failed_run_line,
    task_figure,
    write_results,
)
from pipelines.targets.stopping import StopGuard

RUNNERS = ("subprocess", "docker")
# The user a step runs as in its container: the images' own (containers/Dockerfile), as on a
# cluster that sets no other.
CONTAINER_USER = "1000:1000"
# Step containers share the host's network, as the subprocess runner's steps do (sources on the
# network, gs:// paths); their label lets `docker ps --filter label=...` find them.
CONTAINER_NETWORK = "host"
CONTAINER_LABEL = "image-classification-pipelines.experiment"


class LocalTarget(Target):
    name = "local"
    parallelism = 2  # kfp.local runs at most two loop iterations at once

    @property
    def in_containers(self) -> bool:
        return self.options.runner == "docker"

    def pipeline_root(self) -> Path:
        return (self.options.runs_dir / self.experiment.name).resolve()

    def registry_root(self) -> str:
        # DockerRunner mounts the pipeline root only: the registry must lie inside it.
        if self.in_containers:
            return str(self.pipeline_root() / "registry")
        return str((self.options.runs_dir / "registry").resolve())

    def train_image(self, framework: str) -> str:
        """The image of a train step in containers: no accelerator here, so keras trains in
        images.cpu; transformers in its own image (torch falls back to the CPU)."""
        images = self.experiment.images
        return images.transformers if framework == "transformers" else images.cpu

    def used_images(self) -> dict[str, str]:
        used = {"images.cpu": self.experiment.images.cpu}
        if "transformers" in self.experiment.frameworks():
            used["images.transformers"] = self.experiment.images.transformers
        return used

    def configure(self, task: Any, step: str, framework: str | None = None) -> None:
        if self.in_containers:
            images = self.experiment.images
            image = self.train_image(framework or "keras") if step == "train" else images.cpu
            task.set_container_image(image)

    def _runner(self) -> Any:
        if not self.in_containers:
            return local.SubprocessRunner(use_venv=False)
        return local.DockerRunner(
            user=CONTAINER_USER,
            network_mode=CONTAINER_NETWORK,
            labels={CONTAINER_LABEL: self.experiment.name},
        )

    def check_images(self) -> None:
        """Every image the run needs is in the local Docker daemon (DockerRunner would try to
        pull it from Docker Hub)."""
        try:
            import docker
        except ImportError as exc:
            raise PreflightError(
                "--runner docker needs the docker package: pip install "
                "'image-classification-pipelines[docker]' (or make install EXTRAS=...,docker)"
            ) from exc
        try:
            client = docker.from_env()
            client.ping()
        except docker.errors.DockerException as exc:
            raise PreflightError(
                f"--runner docker: the Docker daemon does not answer ({exc}); start it and retry"
            ) from exc
        with contextlib.closing(client):
            for field, image in self.used_images().items():
                try:
                    client.images.get(image)
                except docker.errors.ImageNotFound:
                    raise PreflightError(
                        f"{field}={image!r} is not in the local Docker daemon; build the images "
                        f"with `make images-local`, or --set {field}=IMAGE to one that is"
                    ) from None

    def host_inputs(self) -> list[str]:
        """The files and folders on this machine that the steps read outside the pipeline root
        (the local paths of the sources, as their kinds name them: folders, files, the files a
        CSV lists; keras weights files, local transformers checkpoints): the docker runner mounts each read-only at its own path, so a
        step in its container sees the paths the experiment names."""
        data = self.experiment.data
        wanted: list[str] = []
        for source in [data.source, *data.extra_train_sources]:
            kind, rest = kind_of(source)
            wanted += kind.host_paths(rest, data)
        for model in self.experiment.models:
            if model.weights not in ("none", "imagenet"):
                wanted.append(model.weights)
            if model.checkpoint:
                wanted.append(model.checkpoint)
        root = str(self.pipeline_root())
        found: list[str] = []
        for path in sorted({os.path.abspath(p) for p in wanted if os.path.exists(p)}):
            covered = [root, *found]
            if not any(path == top or path.startswith(top.rstrip("/") + "/") for top in covered):
                found.append(path)
        return found

    def expected_tasks(self) -> int:
        """ingest, train and evaluate per candidate x seed, every search's tasks, compare,
        gate, best model, export (when the experiment has an export section), register."""
        export = 1 if self.experiment.export is not None else 0
        searches = search_tasks(self.experiment.searched(), self.experiment.seeds)
        tracking = 2 if self.experiment.tracking.mlflow else 0  # track, track registration
        return 1 + 2 * len(self.experiment.candidates()) + searches + 4 + export + tracking

    def checkpoint_root(self) -> str:
        return str(self.pipeline_root() / "checkpoints")

    def run(self) -> dict[str, Any]:
        """Run the pipeline: a line per task on stderr, each step's output in its log file.

        Returns the run summary.
        """
        root = self.pipeline_root()
        if self.in_containers:
            self.check_images()
        with self._writable_by_containers():
            root.mkdir(parents=True, exist_ok=True)
            Path(self.registry_root()).mkdir(parents=True, exist_ok=True)
            Path(self.checkpoint_root()).mkdir(parents=True, exist_ok=True)
            return self._run(root)

    @contextlib.contextmanager
    def _writable_by_containers(self) -> Any:
        """With the docker runner, folders made during the run are writable by the steps'
        user (uid 1000) whoever runs this, as a cluster's emptyDir (0777) is."""
        if not self.in_containers:
            yield
            return
        previous = os.umask(0)
        try:
            yield
        finally:
            os.umask(previous)

    def _run(self, root: Path) -> dict[str, Any]:
        local.init(
            runner=self._runner(),
            pipeline_root=str(root),
            enable_caching=self.options.cache,
            raise_on_error=True,
        )
        pipeline = self.pipeline()
        started = time.time()
        error: str | None = None
        summary: dict[str, Any] | None = None
        with Console(self.expected_tasks(), verbose=self.options.verbose) as console:
            capture = Capture(
                console,
                root,
                figure=task_figure,
                trials={m.name: m.search.trials for m in self.experiment.searched() if m.search},
                stopped_at=lambda: guard.at,
                goes_on=self._goes_on,
                cached_seconds=earlier_seconds,
            )
            if self.in_containers:
                capture.read_only_mounts = {
                    path: {"bind": path, "mode": "ro"} for path in self.host_inputs()
                }
            guard = StopGuard(stop_others=capture.stop_containers)
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
                summary = _compared(console.tasks)
        outcome = _outcome(console.tasks, guard, error, summary)
        registration = self._registration(summary, started)
        seconds = round(time.time() - started, 2)
        results = (
            write_results(
                capture.run_dir,
                self.experiment.name,
                console.tasks,
                _verdict(outcome, seconds, summary, registration, console.tasks),
            )
            if capture.run_dir is not None
            else None
        )
        if results is not None and summary is not None:
            write_json(results.run_dir / SUMMARY_FILE, summary)  # what --compare reads
        return {
            "experiment": self.experiment.name,
            "target": self.name,
            **outcome,
            "seconds": seconds,
            "pipeline_root": str(root),
            "run_dir": str(results.run_dir) if results else None,
            "index": str(results.index) if results else None,
            "reports": [str(p) for p in results.reports] if results else [],
            "logs": [str(p) for p in results.logs] if results else [],
            "tensorboard": str(results.tensorboard) if results and results.tensorboard else None,
            "data": results.data if results else {},
            "tasks": [_task_row(t) for t in console.tasks],
            "summary": summary,
            "failed_runs": [failed_run_line(t) for t in console.tasks if t.goes_on],
            "best_model": _best_model_link(results.run_dir, summary) if results else None,
            "registration": registration,
        }

    def _goes_on(self, record: TaskRecord) -> bool:
        """A failed train or evaluate task of a candidate x seed that the compare step runs
        past (compare.on_failure: continue)."""
        return (
            self.experiment.compare.on_failure == "continue"
            and record.candidate is not None
            and record.trial is None
            and record.name.startswith(("train", "evaluate"))
        )

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


def _verdict(
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


def _compared(tasks: list[TaskRecord]) -> dict[str, Any] | None:
    """The compare step's summary from its task, when it succeeded in a run that failed
    (kfp.local then returns no pipeline output)."""
    task = next((t for t in tasks if t.name == "compare" and t.status == "SUCCESS"), None)
    output = task.outputs.get("summary") if task is not None else None
    return CompareSummary.model_validate(output).to_output() if output else None


def _best_model_link(run_dir: Path, summary: dict[str, Any] | None) -> str | None:
    """The best model through its run's `<candidate>-seed<k>` link in the results folder."""
    if not summary:
        return None
    best = CompareSummary.model_validate(summary).best
    model = Path(best.model_uri)
    link = run_dir / run_name(best.name, best.seed)
    if link.is_dir() and link.resolve() == model.parent.parent.resolve():
        return str(link / model.parent.name / model.name)
    return None


def _task_row(task: TaskRecord) -> dict[str, Any]:
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
