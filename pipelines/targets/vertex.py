"""The `vertex` target: Vertex AI Pipelines (images from config, GPUs, retries, Model Registry)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from pipelines.targets.base import PreflightError, SubmitError, Target

CONSOLE = "https://console.cloud.google.com/vertex-ai/locations/{region}/pipelines/runs/{run}?project={project}"


class VertexTarget(Target):
    name = "vertex"

    def registry_root(self) -> str:
        # Vertex mounts Cloud Storage at /gcs/<bucket> in every step (Cloud Storage FUSE).
        bucket = self.experiment.gcp.bucket or "gs://bucket-not-configured"
        return "/gcs/" + bucket.removeprefix("gs://").rstrip("/") + "/registry"

    def pipeline_root(self) -> str | None:
        bucket = self.experiment.gcp.bucket
        return f"{bucket.rstrip('/')}/pipeline-root/{self.experiment.name}" if bucket else None

    def configure(self, task: Any, step: str, framework: str | None = None) -> None:
        images = self.experiment.images
        task.set_container_image(
            self.train_image(framework or "keras") if step == "train" else images.cpu
        )
        if step != "train":
            return
        resources = self.experiment.resources.vertex
        if resources.cpu_limit:
            task.set_cpu_limit(resources.cpu_limit)
        if resources.memory_limit:
            task.set_memory_limit(resources.memory_limit)
        if resources.accelerator:
            task.set_accelerator_type(resources.accelerator).set_accelerator_limit(resources.count)
        if resources.retries:
            task.set_retry(
                num_retries=resources.retries, backoff_duration="60s", backoff_factor=2.0
            )

    def preflight(self) -> None:
        gcp = self.experiment.gcp
        missing = [
            f"gcp.{name}"
            for name in ("project", "bucket", "service_account")
            if not getattr(gcp, name)
        ]
        if missing:
            raise PreflightError(
                f"--target vertex needs {', '.join(missing)}; set them in the experiment or with "
                f"--set (e.g. --set gcp.project=my-project --set gcp.bucket=gs://my-bucket)"
            )

    def run(self) -> dict[str, Any]:
        self.preflight()
        try:
            from google.cloud import aiplatform
        except ImportError:
            raise SubmitError(
                "--target vertex needs the vertex extra: pip install -e '.[vertex]'"
            ) from None
        gcp = self.experiment.gcp
        with tempfile.TemporaryDirectory() as folder:
            package = self.compile(Path(folder) / "pipeline.yaml")
            aiplatform.init(project=gcp.project, location=gcp.region, staging_bucket=gcp.bucket)
            job = aiplatform.PipelineJob(
                display_name=f"imgclf-{self.experiment.name}",
                template_path=str(package),
                pipeline_root=self.pipeline_root(),
                enable_caching=self.options.cache,
                labels={"experiment": self.experiment.name},
                encryption_spec_key_name=gcp.encryption_key,
            )
            job.submit(service_account=gcp.service_account, network=gcp.network)
        url = CONSOLE.format(region=gcp.region, run=job.name, project=gcp.project)
        if self.options.wait:
            job.wait()
        return {
            "experiment": self.experiment.name,
            "target": self.name,
            "status": "SUBMITTED",
            "run": job.resource_name,
            "url": url,
        }
