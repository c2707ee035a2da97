"""What every target provides: per-task configuration, the registry location, compile and run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfp import compiler

from pipelines.config import Experiment

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


class SubmitError(RuntimeError):
    """The run could not be submitted; the message says what to fix."""


class PreflightError(ValueError):
    """The experiment is not ready for this target (exit code 2); nothing was submitted."""


class Target:
    name = "base"
    parallelism = 0  # 0: as many loop iterations at once as the backend allows
    # Registry host -> (user, secret) for pinning image tags to digests; None: the defaults of
    # pipelines.targets.digests (Google's application default credentials, ~/.docker/config.json).
    registry_credentials: Any = None

    def __init__(self, experiment: Experiment, options: RunOptions | None = None):
        self.experiment = experiment
        self.options = options or RunOptions()

    # --- compile-time hooks, called from pipelines/training.py ---------------------------

    def registry_root(self) -> str:
        raise NotImplementedError

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
        register_task = register_local(
            model=best_model.output,
            registry_root=registry_root,
            name=name,
            summary=summary,
            aliases=aliases,
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

    def used_images(self) -> dict[str, str]:
        """Config field -> image, for every image this experiment's pipeline runs in."""
        images = self.experiment.images
        used = {"images.cpu": images.cpu}
        for framework in self.experiment.frameworks():
            image = self.train_image(framework)
            if framework == "transformers":
                used["images.transformers"] = image
            else:  # cpu, gpu or tpu, by the experiment's hardware
                field = next(f for f, i in images.model_dump().items() if i == image)
                used[f"images.{field}"] = image
        return used

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
        from pipelines.training import build_pipeline

        return build_pipeline(self.experiment, self)

    def compile(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        compiler.Compiler().compile(self.pipeline(), package_path=str(path))
        return path

    def run(self) -> dict[str, Any]:
        raise NotImplementedError
