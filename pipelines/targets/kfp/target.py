"""The kfp target itself: the pipeline's task hooks (images, Kubernetes resources and settings
through kfp-kubernetes, retries, a TrainJob launch) and running a submission (health check,
pins, compile, submit, follow)."""

from __future__ import annotations

import sys
import tempfile
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components.train.trainjob import TRAINJOB_ENV, TrainJobLaunch
from pipelines.targets.base import (
    RETRY_BACKOFF,
    RETRY_BACKOFF_FACTOR,
    PreflightError,
    SubmitError,
    Target,
)
from pipelines.targets.kfp import api, submit
from pipelines.targets.kfp.cluster import (
    DATA_MOUNT,
    GPU_RESOURCE,
    KFP_NAMESPACE,
    REGISTRY_MOUNT,
    TRAINING_MOUNT,
    pending_gpu_warning,
)


class KfpTarget(Target):
    name = "kfp"
    poll_seconds = 5.0  # --wait: time between two looks at the run
    wait_timeout_s: float | None = None  # --wait: give up after this long; None waits until the end
    lost_polls = 6  # --wait: consecutive failed looks before giving up (port-forwards drop)
    connect_timeout_s = 10.0
    # KFP 2.17's Argo compiler (backend/src/v2/compiler/argocompiler/dag.go) turns a task with
    # triggerPolicy ALL_UPSTREAM_TASKS_COMPLETED into an exit lifecycle hook of each task it
    # depends on, outside the DAG: compare would run once per loop, and the gate after it
    # would wait on a task the DAG does not hold. So compare waits for every candidate here.
    runs_past_failed_tasks = False

    def registry_root(self) -> str:
        return REGISTRY_MOUNT

    def steps_only_paths(self) -> tuple[str, ...]:
        return (DATA_MOUNT,) if self.experiment.kfp.data_pvc else ()

    def warnings_before_compiling(self) -> list[str]:
        warning = pending_gpu_warning(self.experiment)
        return [warning] if warning else []

    def latest_registered(
        self, source_classes: Callable[[], list[str] | None]
    ) -> tuple[str, list[str]] | None:
        # The registry is a volume of the cluster, mounted in the register step's pod only.
        pvc = self.experiment.kfp.registry_pvc
        print(
            f"note: the registry on the cluster ({f'PVC {pvc}' if pvc else 'the register pod'}) "
            "cannot be read from here: a class change is checked by the register step, which "
            "fails the run and says so (register.allow_class_change: true to allow it)",
            file=sys.stderr,
        )
        return None

    def compile(self, path: str | Path) -> Path:
        if self.experiment.compare.on_failure == "continue":
            print(
                "note: compare.on_failure: continue is not available on KFP's backend (2.17 "
                "runs a task that ignores upstream failures as an exit hook of each upstream "
                "task, outside the DAG): a failed candidate fails its task and the run there",
                file=sys.stderr,
            )
        return super().compile(path)

    def pipeline_name(self) -> str:
        return f"imgclf-{self.experiment.name}"

    # --- compile-time hooks --------------------------------------------------------------

    def configure(self, task: Any, step: str, framework: str | None = None) -> None:
        from kfp import kubernetes

        images = self.experiment.images
        settings = self.experiment.kfp
        task.set_container_image(
            self.train_image(framework or "keras") if step == "train" else images.cpu
        )
        kubernetes.set_image_pull_policy(task, settings.image_pull_policy)
        if not self.options.cache:
            # A run of an uploaded pipeline version takes caching from the spec only.
            task.set_caching_options(False)
        if step == "ingest" and settings.data_pvc:
            kubernetes.mount_pvc(task, pvc_name=settings.data_pvc, mount_path=DATA_MOUNT)
        if step == "register" and settings.registry_pvc:
            kubernetes.mount_pvc(task, pvc_name=settings.registry_pvc, mount_path=REGISTRY_MOUNT)
        if step != "train":
            return
        resources = self.experiment.resources.kfp
        if self.experiment.resources.kfp_replicas > 1 and framework == "transformers":
            self._launch_trainjob(task)
        else:
            self._train_in_the_pod(task)
        if resources.retries:
            # On the training task itself, a container task directly in the loop body, where
            # KFP 2.17's Argo compiler puts a retryStrategy on the training pod (README,
            # "Design notes"). backoff_max_duration is Argo's deadline for all attempts.
            task.set_retry(
                num_retries=resources.retries,
                backoff_duration=RETRY_BACKOFF,
                backoff_factor=RETRY_BACKOFF_FACTOR,
                backoff_max_duration=resources.retry_max_duration,
            )

    def trainjob_launch(self) -> TrainJobLaunch:
        """The TrainJob the train step starts: the training pod's resources on every node."""
        resources = self.experiment.resources.kfp
        return TrainJobLaunch(
            namespace=KFP_NAMESPACE,
            runtime=resources.training_runtime,
            nodes=self.experiment.resources.kfp_replicas,
            procs_per_node=max(resources.gpus, 1),
            image=self.train_image("transformers"),
            gpus=resources.gpus,
            cpu_limit=resources.cpu_limit,
            memory_limit=resources.memory_limit,
            volume_claim=resources.training_pvc,
            mount_path=TRAINING_MOUNT,
            node_selector=resources.node_selector,
            tolerations=[t.model_dump(exclude_none=True) for t in resources.tolerations],
        )

    def _launch_trainjob(self, task: Any) -> None:
        """The train step starts a TrainJob and waits: the pod itself needs no accelerator, only
        the volume it shares with the TrainJob's nodes."""
        from kfp import kubernetes

        launch = self.trainjob_launch()
        task.set_env_variable(TRAINJOB_ENV, launch.model_dump_json(exclude_defaults=False))
        kubernetes.mount_pvc(task, pvc_name=launch.volume_claim, mount_path=launch.mount_path)

    def _train_in_the_pod(self, task: Any) -> None:
        from kfp import kubernetes

        resources = self.experiment.resources.kfp
        if resources.cpu_limit:
            task.set_cpu_limit(resources.cpu_limit)
        if resources.memory_limit:
            task.set_memory_limit(resources.memory_limit)
        if resources.gpus:
            task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(resources.gpus)
        for key, value in resources.node_selector.items():
            kubernetes.add_node_selector(task, label_key=key, label_value=value)
        for toleration in resources.tolerations:
            kubernetes.add_toleration(
                task,
                key=toleration.key,
                operator=toleration.operator,
                value=toleration.value,
                effect=toleration.effect,
            )

    def train_image(self, framework: str) -> str:
        images = self.experiment.images
        if framework == "transformers":
            return images.transformers
        return images.gpu if self.experiment.resources.kfp.gpus else images.cpu

    def used_images(self) -> dict[str, str]:
        used = {"images.cpu": self.experiment.images.cpu}
        for framework in self.experiment.frameworks():
            if framework == "transformers":
                field = "transformers"
            else:
                field = "gpu" if self.experiment.resources.kfp.gpus else "cpu"
            used[f"images.{field}"] = self.train_image(framework)
        return used

    # --- submit --------------------------------------------------------------------------

    def host(self) -> str:
        host = self.options.host
        if not host:
            raise PreflightError(
                "--target kfp needs --host, the KFP API address (e.g. http://localhost:8080)"
            )
        parts = urllib.parse.urlsplit(host)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise PreflightError(
                f"--host {host!r} is not an http(s) URL; use the KFP UI or API address, "
                "e.g. --host http://localhost:8080"
            )
        return host.rstrip("/")

    def run(self) -> dict[str, Any]:
        host = self.host()
        health = api.check_api(host, self.connect_timeout_s)
        api.warn_on_version_mismatch(host, health)
        for field, (tag, pinned) in self.pin_images().items():
            print(f"pinned {field}: {tag} is {pinned.rsplit('@', 1)[1]}", file=sys.stderr)
        import kfp

        with tempfile.TemporaryDirectory() as folder, api.client_output_to_stderr():
            package = self.compile(Path(folder) / "pipeline.yaml")
            try:
                client = kfp.Client(host=host)
                result = self._submit(client, package, host)
                if self.options.wait:
                    result.update(
                        submit.wait(
                            client,
                            result["run"],
                            result["url"],
                            host,
                            self.poll_seconds,
                            self.wait_timeout_s,
                            self.lost_polls,
                        )
                    )
            except SubmitError:
                raise
            except Exception as exc:  # the client raises transport, API and its own errors
                raise SubmitError(api.describe_error(exc, host)) from exc
        return result

    def _submit(self, client: Any, package: Path, host: str) -> dict[str, Any]:
        name = self.pipeline_name()
        pipeline_root = self.experiment.kfp.pipeline_root
        submitted = submit.submit(
            client, package, name, self.experiment.description or None, pipeline_root
        )
        url = f"{host}/#/runs/details/{submitted.run_id}"
        print(f"submitted {name}: {url}", file=sys.stderr)
        return {
            "experiment": self.experiment.name,
            "target": self.name,
            "status": "SUBMITTED",
            "run": submitted.run_id,
            "url": url,
            "pipeline": submitted.pipeline_id,
            "pipeline_version": submitted.version_id,
            "kfp_experiment": submitted.experiment_id,
            "pipeline_root": pipeline_root,
            "images": self.used_images(),
        }
