"""The `kfp` target: KFP standalone (e.g. on a local kind cluster) through `kfp.Client`."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from pipelines.targets.base import PreflightError, SubmitError, Target

GPU_RESOURCE = "nvidia.com/gpu"


class KfpTarget(Target):
    name = "kfp"

    def registry_root(self) -> str:
        return "/mnt/registry"

    def configure(self, task: Any, step: str, framework: str | None = None) -> None:
        images = self.experiment.images
        task.set_container_image(
            self.train_image(framework or "keras") if step == "train" else images.cpu
        )
        if step != "train":
            return
        resources = self.experiment.resources.kfp
        if resources.cpu_limit:
            task.set_cpu_limit(resources.cpu_limit)
        if resources.memory_limit:
            task.set_memory_limit(resources.memory_limit)
        if resources.gpus:
            task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(resources.gpus)

    def train_image(self, framework: str) -> str:
        images = self.experiment.images
        if framework == "transformers":
            return images.transformers
        return images.gpu if self.experiment.resources.kfp.gpus else images.cpu

    def run(self) -> dict[str, Any]:
        if not self.options.host:
            raise PreflightError(
                "--target kfp needs --host, the KFP API address (e.g. http://localhost:8080)"
            )
        import kfp

        client = kfp.Client(host=self.options.host)
        with tempfile.TemporaryDirectory() as folder:
            package = self.compile(Path(folder) / "pipeline.yaml")
            try:
                run = client.create_run_from_pipeline_package(
                    str(package),
                    arguments={},
                    run_name=f"imgclf-{self.experiment.name}",
                    experiment_name=f"imgclf-{self.experiment.name}",
                    enable_caching=self.options.cache,
                )
            except Exception as exc:  # the client raises transport and API errors alike
                raise SubmitError(f"KFP at {self.options.host} refused the run: {exc}") from exc
        url = f"{self.options.host.rstrip('/')}/#/runs/details/{run.run_id}"
        result: dict[str, Any] = {
            "experiment": self.experiment.name,
            "target": self.name,
            "status": "SUBMITTED",
            "run": run.run_id,
            "url": url,
        }
        if self.options.wait:
            finished = client.wait_for_run_completion(run.run_id, timeout=24 * 3600)
            result["status"] = str(finished.state)
        return result
