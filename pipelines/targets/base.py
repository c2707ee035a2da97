"""What every target provides: per-task configuration, the registry location, compile and run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfp import compiler

from pipelines.config import Experiment


@dataclass
class RunOptions:
    runs_dir: Path = Path("runs")
    cache: bool = True
    host: str | None = None
    wait: bool = False
    quiet: bool = False
    data_snapshot: str = ""  # hash of the source's listing (components/ingest/snapshot.py)
    fresh: bool = False  # train from scratch: existing checkpoints are not resumed


class SubmitError(RuntimeError):
    """The run could not be submitted; the message says what to fix."""


class PreflightError(ValueError):
    """The experiment is not ready for this target (exit code 2); nothing was submitted."""


class Target:
    name = "base"
    parallelism = 0  # 0: as many loop iterations at once as the backend allows

    def __init__(self, experiment: Experiment, options: RunOptions | None = None):
        self.experiment = experiment
        self.options = options or RunOptions()

    # --- compile-time hooks, called from pipelines/training.py ---------------------------

    def registry_root(self) -> str:
        raise NotImplementedError

    def checkpoint_root(self) -> str:
        """The folder (as the train step sees it) under which training checkpoints live, outside
        any run's own folder so that a rerun resumes; "" keeps them in the step's own output
        folder (a retry of the same task resumes, a new run does not)."""
        return ""

    def configure(self, task: Any, step: str, framework: str | None = None) -> None:
        """Set image, resources and retries of one task."""

    def component_for(self, step: str, component: Any, framework: str | None = None) -> Any:
        """The component that runs `step` here; called like the step's own component.

        The base runs every step's component as it is; the vertex target wraps training in a
        Vertex AI custom job where a plain task cannot express the hardware (TPUs, spot, ...).
        """
        return component

    def add_register(
        self,
        *,
        best_model_uri: Any,
        summary: Any,
        registry_root: Any,
        name: Any,
        aliases: Any,
    ) -> Any:
        """Add the steps that register the gated best model (called inside the gate's condition).

        The base imports the best Model and copies it into the folder registry
        `<registry_root>/<name>/vN/` (register_local). Returns the register task.
        """
        from kfp import dsl
        from kfp.dsl import Model

        from components.register.component import register_local

        best_model = dsl.importer(
            artifact_uri=best_model_uri,
            artifact_class=Model,
            reimport=False,
        ).set_display_name("best model")
        assert self.experiment.registration is not None
        register_task = register_local(
            model=best_model.output,
            registry_root=registry_root,
            name=name,
            summary=summary,
            aliases=aliases,
            allow_class_change=self.experiment.registration.allow_class_change,
        ).set_display_name("register")
        self.configure(register_task, "register")
        return register_task

    def train_image(self, framework: str) -> str:
        images = self.experiment.images
        if framework == "transformers":
            return images.transformers
        accelerator = self.experiment.resources.vertex
        if accelerator.is_tpu:
            return images.tpu
        if accelerator.accelerator:
            return images.gpu
        return images.cpu

    # --- compile and run -----------------------------------------------------------------

    def pipeline(self) -> Any:
        from pipelines.training import build_pipeline

        return build_pipeline(self.experiment, self)

    def compile(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        compiler.Compiler().compile(self.pipeline(), package_path=str(path))
        return path

    def run(self) -> dict[str, Any]:
        raise NotImplementedError
