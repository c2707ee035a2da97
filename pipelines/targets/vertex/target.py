"""The vertex target itself: the pipeline's task hooks (images, hardware, retries) and running a
submission (preflight, describe, compile, submit, follow)."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from components.common.files import GCS_MOUNT
from pipelines.errors import PreflightError
from pipelines.targets.base import RETRY_BACKOFF, RETRY_BACKOFF_FACTOR, Target
from pipelines.targets.vertex import hardware, images, preflight, submit
from pipelines.targets.vertex.registry import bucket_registry_latest


class VertexTarget(Target):
    name = "vertex"
    model_registry: Literal["folder", "vertex"] = "vertex"
    poll_seconds = 30.0  # --wait: time between two looks at the run
    source_dir = Path(__file__).resolve().parents[3]  # where `git rev-parse` reads the commit

    def registry_root(self) -> str:
        # Vertex mounts Cloud Storage at /gcs/<bucket> in every step (Cloud Storage FUSE).
        bucket = self.experiment.gcp.bucket or "gs://bucket-not-configured"
        return GCS_MOUNT + bucket.removeprefix("gs://").rstrip("/") + "/registry"

    def checkpoint_root(self) -> str:
        # Under the pipeline root, through the same mount, so a new run of the experiment resumes.
        bucket = self.experiment.gcp.bucket or "gs://bucket-not-configured"
        return (
            GCS_MOUNT
            + bucket.removeprefix("gs://").rstrip("/")
            + f"/pipeline-root/{self.experiment.name}/checkpoints"
        )

    def steps_only_paths(self) -> tuple[str, ...]:
        return (GCS_MOUNT,)

    def latest_registered(
        self, source_classes: Callable[[], list[str] | None]
    ) -> tuple[str, list[str]] | None:
        # The cheaper look first: the source's class names before the bucket.
        try:
            self.preflight()  # offline; its problems are told first, when the target runs
        except PreflightError:
            return None
        if not source_classes():
            return None
        return bucket_registry_latest(self.experiment, self.registry_root())

    def pipeline_root(self) -> str | None:
        bucket = self.experiment.gcp.bucket
        return f"{bucket.rstrip('/')}/pipeline-root/{self.experiment.name}" if bucket else None

    # --- compile-time hooks --------------------------------------------------------------

    def trackers(self) -> dict[str, str]:
        # gcp.experiment: the track step records each candidate x seed there as well.
        trackers = super().trackers()
        gcp = self.experiment.gcp
        if gcp.experiment:
            trackers.update(
                vertex_experiment=gcp.experiment, project=gcp.project or "", location=gcp.region
            )
        return trackers

    def train_image(self, framework: str) -> str:
        return images.train_image(self.experiment, framework)

    def component_for(self, step: str, component: Any, framework: str | None = None) -> Any:
        if step != "train" or not hardware.uses_custom_job(self.experiment):
            return component
        framework = framework or "keras"
        return hardware.training_job(
            component, self.experiment, self.train_image(framework), framework
        )

    def configure(self, task: Any, step: str, framework: str | None = None) -> None:
        task.set_container_image(
            self.train_image(framework or "keras")
            if step == "train"
            else self.experiment.images.cpu
        )
        if step != "train":
            return
        resources = self.experiment.resources.vertex
        if not hardware.uses_custom_job(self.experiment):
            if resources.cpu_limit:
                task.set_cpu_limit(resources.cpu_limit)
            if resources.memory_limit:
                task.set_memory_limit(resources.memory_limit)
            if resources.accelerator:
                task.set_accelerator_type(resources.accelerator).set_accelerator_limit(
                    resources.count
                )
        # else: the task only launches the custom job and waits; its machine is in the job.
        if resources.retries:
            task.set_retry(
                num_retries=resources.retries,
                backoff_duration=RETRY_BACKOFF,
                backoff_factor=RETRY_BACKOFF_FACTOR,
            )

    # --- submit --------------------------------------------------------------------------

    def used_images(self) -> dict[str, str]:
        """Config field -> image, for every image this experiment's pipeline runs in."""
        return images.used_images(self.experiment)

    def preflight(self) -> list[str]:
        """Check, without the network, that the run can be submitted. Returns warnings; raises
        PreflightError naming every problem and how to fix it."""
        return preflight.preflight(self.experiment)

    def labels(self) -> dict[str, str]:
        return submit.labels(self.experiment, self.source_dir)

    def describe(self) -> list[str]:
        """What the run will use: each image (pinned by tag or digest) and the training hardware."""
        lines = ["images:"]
        for field, image in self.used_images().items():
            kind, pin = images.image_pin(image)
            lines.append(f"  {field}: {image} ({kind} {pin})")
        lines.append(hardware.describe_training(self.experiment))
        return lines

    def run(self) -> dict[str, Any]:
        for warning in self.preflight():
            self._say(f"warning: {warning}")
        for field, (tag, pinned) in self.pin_images().items():
            self._say(f"pinned {field}: {tag} is {pinned.rsplit('@', 1)[1]}")
        for line in self.describe():
            self._say(line)
        gcp = self.experiment.gcp
        with tempfile.TemporaryDirectory() as folder, submit.sdk_logs_to_stderr():
            package = self.compile(Path(folder) / "pipeline.yaml")
            job = submit.submit_job(
                self.experiment, package, self.pipeline_root(), self.options.cache, self.labels()
            )
        url = submit.CONSOLE.format(region=gcp.region, run=job.name, project=gcp.project)
        self._say(f"submitted {job.resource_name}")
        self._say(f"console: {url}")
        result: dict[str, Any] = {
            "experiment": self.experiment.name,
            "target": self.name,
            "status": "SUBMITTED",
            "run": job.resource_name,
            "url": url,
            "images": self.used_images(),
        }
        if self.options.wait:
            with submit.sdk_logs_to_stderr():
                result.update(submit.follow(job, self.experiment, self.poll_seconds, self._say))
        return result

    def _say(self, line: str) -> None:
        if not self.options.quiet:
            print(line, file=sys.stderr)
