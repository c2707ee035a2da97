"""What every target provides: per-task configuration (the pipeline's `TaskHooks`), the registry
location, the checks the CLI makes before compiling (what its steps see that this machine does
not, the registry's classes, warnings), compile and run. A target builds no part of the DAG: it
hands itself to `pipelines.training.build_pipeline` and compiles or runs what comes back."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kfp import compiler

from components.spec.tracking import TrackingSpec
from pipelines.config import Experiment
from pipelines.errors import PreflightError, SubmitError
from pipelines.source import SOURCE_DIR, git_commit
from pipelines.training import build_pipeline

if TYPE_CHECKING:
    from components.ingest.sources.listing import Listings

__all__ = ["PreflightError", "RunOptions", "SubmitError", "Target"]

# Retries of the training task on the cluster targets: wait 60 s before the first, twice as long
# before each next one. The factor stays whole: Argo reads it as an integer (intstr).
RETRY_BACKOFF = "60s"
RETRY_BACKOFF_FACTOR = 2.0


@dataclass
class RunOptions:
    runs_dir: Path = Path("runs")
    cache: bool = True
    host: str | None = None
    wait: bool = False
    quiet: bool = False
    verbose: bool = False  # local target: stream every step's output instead of logging it
    data_snapshot: str = ""  # hash of the source's listing (components/ingest/snapshot.py)
    fresh: bool = False  # train from scratch: existing checkpoints are not resumed
    runner: str = "subprocess"  # local target: each step a process here, or "docker": in its image


class Target:
    name = "base"
    parallelism = 0  # 0: as many loop iterations at once as the backend allows
    model_registry: Literal["folder", "vertex"] = "folder"
    # Whether the backend runs a task that ignores upstream failures (compare, with
    # compare.on_failure: continue) in the DAG, where the tasks after it read its outputs.
    runs_past_failed_tasks = True
    # Registry host -> (user, secret) for pinning image tags to digests; None: the defaults of
    # pipelines.targets.digests (Google's application default credentials, ~/.docker/config.json).
    registry_credentials: Any = None
    # --runner values this target takes: how the local target runs its steps; the others run
    # them in the experiment's images themselves.
    runners: tuple[str, ...] = ("subprocess",)
    # Whether a run writes under --runs-dir on this machine (checked writable before it starts).
    writes_runs_dir = False

    def __init__(self, experiment: Experiment, options: RunOptions | None = None):
        self.experiment = experiment
        self.options = options or RunOptions()

    # --- compile-time hooks, called from pipelines/training.py ---------------------------

    def registry_root(self) -> str:
        raise NotImplementedError

    @property
    def data_snapshot(self) -> str:
        return self.options.data_snapshot

    @property
    def fresh(self) -> bool:
        return self.options.fresh

    def checkpoint_root(self) -> str:
        """The folder (as the train step sees it) under which training checkpoints live, outside
        any run's own folder so that a rerun resumes; "" keeps them in the step's own output
        folder (a retry of the same task resumes, a new run does not)."""
        return ""

    def configure(self, task: Any, step: str, framework: str | None = None) -> None:
        """Set image, resources and retries of one task."""

    def trackers(self) -> dict[str, str]:
        """The TrackingSpec fields naming where this target records runs; {} for nowhere."""
        settings = self.experiment.tracking
        if not settings.mlflow:
            return {}
        return {
            "mlflow": settings.mlflow,
            "mlflow_experiment": settings.mlflow_experiment or self.experiment.name,
        }

    def tracking(self) -> dict[str, Any]:
        """The track steps' TrackingSpec; {} when the experiment records its runs nowhere."""
        trackers = self.trackers()
        if not trackers:
            return {}
        commit, dirty = git_commit(SOURCE_DIR)
        spec = TrackingSpec(
            **trackers,
            experiment=self.experiment.name,
            target=self.name,
            commit=(commit or "") + ("-dirty" if dirty else ""),
        )
        return spec.model_dump(mode="json")

    def component_for(self, step: str, component: Any, framework: str | None = None) -> Any:
        """The component that runs `step` here; called like the step's own component.

        The base runs every step's component as it is; the vertex target wraps training in a
        Vertex AI custom job where a plain task cannot express the hardware (TPUs, spot, ...).
        """
        return component

    # --- checks before compiling, called from pipelines/cli.py -----------------------------

    def steps_only_paths(self) -> tuple[str, ...]:
        """Path prefixes that exist only where this target runs the steps, not here: sources
        under them are not listed or read before the run."""
        return ()

    def warnings_before_compiling(self) -> list[str]:
        """What will go wrong where the run goes, known before compiling."""
        return []

    def registry_preflight(
        self, not_here: tuple[str, ...], listings: Listings | None = None
    ) -> list[str]:
        """The folder registry's refusal of a new version whose classes differ from its latest
        version's, known before anything runs where both are known: the source's classes
        (components/ingest/classes.py) and a registry this machine reads
        (`latest_registered`)."""
        from components.ingest.classes import known_class_names
        from components.register.run import class_change

        registration = self.experiment.registration
        if registration.allow_class_change:
            return []
        source_classes = functools.cache(
            lambda: known_class_names(self.experiment.data, not_here, listings)
        )
        latest = self.latest_registered(source_classes)
        names = source_classes() if latest is not None else None
        if latest is None or not names:
            return []
        version, before = latest
        problem = class_change(registration.name, version, before, names)
        return [f"register.name {registration.name}: {problem}"] if problem else []

    def latest_registered(
        self, source_classes: Callable[[], list[str] | None]
    ) -> tuple[str, list[str]] | None:
        """The latest version of the experiment's registered model and its class names, where
        this machine can read the registry; None where it cannot (the register step checks).
        `source_classes()` (cached) gives the source's classes, for a target that asks for them
        before a costlier look at its registry."""
        return None

    # --- images ----------------------------------------------------------------------------

    def used_images(self) -> dict[str, str]:
        """Config field -> image, for every image this experiment's pipeline runs in."""
        raise NotImplementedError

    def pin_images(self) -> dict[str, tuple[str, str]]:
        """Replace every used `images.*` tag that names a registry by its digest, so the run
        (and the backend's cache) sees exactly which image ran. field -> (tag, digest reference)
        for those it changed. The submits call this; --compile-only stays offline."""
        from pipelines.targets.digests import resolve_images

        used = {f: i for f, i in self.used_images().items() if f.startswith("images.")}
        pinned = resolve_images(used, self.registry_credentials)
        changed = {f: (used[f], pinned[f]) for f in used if pinned[f] != used[f]}
        if changed:
            update = {f.removeprefix("images."): new for f, (_, new) in changed.items()}
            images = self.experiment.images.model_copy(update=update)
            self.experiment = self.experiment.model_copy(update={"images": images})
        return changed

    # --- compile and run -----------------------------------------------------------------

    def pipeline(self) -> Any:
        return build_pipeline(self.experiment, self)

    def compile(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        compiler.Compiler().compile(self.pipeline(), package_path=str(path))
        return path

    def run(self) -> dict[str, Any]:
        raise NotImplementedError
