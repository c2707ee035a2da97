"""The `local` target: the whole pipeline through kfp.local, each step a process in this Python
environment (runner `subprocess`) or a container of its image (runner `docker`: kfp.local's
DockerRunner, as a cluster runs it: the image's own environment, uid 1000, only the pipeline
root mounted)."""

from __future__ import annotations

import contextlib
import datetime
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kfp import local

from components.common.files import read_json, write_json
from components.common.model_card import CARD_FILE
from components.common.results import CompareSummary
from components.ingest.sources import kind_of
from components.register.folders import versions
from components.register.run import find_registration
from pipelines.compare_runs import SUMMARY_FILE
from pipelines.search import search_tasks
from pipelines.targets.base import PreflightError, Target
from pipelines.targets.local.capture import Capture
from pipelines.targets.local.console import ANSI, Console
from pipelines.targets.local.kfp_local_patches import installed
from pipelines.targets.local.outcome import (
    best_model_link,
    compared_summary,
    index_verdict,
    run_outcome,
    task_row,
)
from pipelines.targets.local.results import (
    earlier_seconds,
    failed_run_line,
    task_figure,
    write_results,
)
from pipelines.targets.local.stopping import StopGuard
from pipelines.targets.local.tasks import TaskRecord

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
    runners = RUNNERS
    writes_runs_dir = True

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

    def latest_registered(
        self, source_classes: Callable[[], list[str] | None]
    ) -> tuple[str, list[str]] | None:
        # The registry folder is on this machine: read it before listing the source.
        return folder_registry_latest(
            Path(self.registry_root()) / self.experiment.registration.name
        )

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
                with guard, installed(capture):
                    output = pipeline().output
                # kfp.local hands the summary over with its ints as floats; the typed
                # result turns them back (seed 0, not 0.0)
                summary = CompareSummary.model_validate(output).to_output() if output else None
            except Exception as exc:
                # kfp.local raises RuntimeError for a failed step; after a stop, whatever it raised
                if guard.signal is None and not isinstance(exc, RuntimeError):
                    raise
                error = ANSI.sub("", str(exc))
                summary = compared_summary(console.tasks)
        outcome = run_outcome(console.tasks, guard, error, summary)
        registration = self._registration(summary, started)
        seconds = round(time.time() - started, 2)
        results = (
            write_results(
                capture.run_dir,
                self.experiment.name,
                console.tasks,
                index_verdict(outcome, seconds, summary, registration, console.tasks),
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
            "tasks": [task_row(t) for t in console.tasks],
            "summary": summary,
            "failed_runs": [failed_run_line(t) for t in console.tasks if t.goes_on],
            "best_model": best_model_link(results.run_dir, summary) if results else None,
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


def folder_registry_latest(root: Path) -> tuple[str, list[str]] | None:
    """The latest version of a folder registry name on this machine and its class names."""
    found = versions(root) if root.is_dir() else []
    card = found[-1] / CARD_FILE if found else None
    if card is None or not card.is_file():
        return None
    return found[-1].name, list(read_json(card).get("class_names") or [])
