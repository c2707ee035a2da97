"""The `kfp` target: KFP standalone (e.g. the kind cluster of infra/kind) through `kfp.Client`.

Compile: step images, the Kubernetes GPU resource name and, through kfp-kubernetes, the image pull
policy, node selectors, tolerations and PVC mounts. With `resources.kfp.replica_count` above 1 a
transformers train step starts a Kubeflow Trainer TrainJob instead of training in its pod: the
compile carries the TrainJob's settings (`TRAINJOB_ENV`, components/train/trainjob.py) and the
volume the step shares with it. kfp-kubernetes writes those into a platform
spec (a second YAML document of the package); only this target calls it, because Vertex rejects
such settings.

Submit: upload the package as a pipeline (a new version of it when the pipeline exists), create
or reuse the KFP experiment of the same name, start a run with the pipeline's parameters and the
pipeline root, print the UI link; with --wait, poll the run and print every state change.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from components.train.trainjob import TRAINJOB_ENV, TrainJobLaunch
from pipelines.targets.base import (
    RETRY_BACKOFF,
    RETRY_BACKOFF_FACTOR,
    PreflightError,
    SubmitError,
    Target,
)

GPU_RESOURCE = "nvidia.com/gpu"
KFP_NAMESPACE = "kubeflow"  # where KFP standalone runs its pods (infra/kind/common.sh)
REGISTRY_MOUNT = "/mnt/registry"
TRAINING_MOUNT = "/mnt/training"  # the volume a train step shares with its TrainJob
DATA_MOUNT = "/mnt/data"
HEALTHZ = "/apis/v2beta1/healthz"
FINAL_STATES = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED")
KIND_HINT = "is the cluster up and its UI port-forwarded? `make kind-up` does both"


KUBECTL_TIMEOUT_S = 5  # a cluster that is down must not hold up compiling


def gpu_nodes(context: str) -> int | None:
    """How many nodes of the cluster of kubectl `context` offer nvidia.com/gpu, or None when
    kubectl cannot say (not installed, no such context, the cluster down)."""
    import shutil
    import subprocess

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    try:
        answer = subprocess.run(
            [
                kubectl,
                "--context",
                context,
                "get",
                "nodes",
                "-o",
                "json",
                f"--request-timeout={KUBECTL_TIMEOUT_S}s",
            ],
            capture_output=True,
            text=True,
            timeout=KUBECTL_TIMEOUT_S + 5,
            check=False,
        )
        nodes = json.loads(answer.stdout)["items"] if answer.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError):
        return None
    if nodes is None:
        return None
    return sum(
        1
        for node in nodes
        if str(node.get("status", {}).get("allocatable", {}).get(GPU_RESOURCE, "0"))
        not in ("0", "")
    )


def pending_gpu_warning(experiment: Any) -> str | None:
    """A warning when training asks for GPUs that no node of the cluster offers: its pod would
    stay Pending. kind clusters have no GPU node unless made with nvkind (infra/kind)."""
    gpus = experiment.resources.kfp.gpus
    if not gpus:
        return None
    settings = experiment.kfp
    if settings.gpu_nodes is None:
        found = gpu_nodes(settings.kube_context)
        if found is None or found:
            return None
        where = (
            f"no node of the cluster of kube context {settings.kube_context} offers {GPU_RESOURCE}"
        )
    elif not settings.gpu_nodes:
        where = f"kfp.gpu_nodes is false: no node of the cluster offers {GPU_RESOURCE}"
    else:
        return None
    return (
        f"resources.kfp.gpus is {gpus} but {where} (kind has none unless made with nvkind, "
        "see infra/kind/cluster.yaml): the training pods would stay Pending. Train on CPU with "
        "--set resources.kfp.gpus=0, or add a GPU node"
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
        health = check_api(host, self.connect_timeout_s)
        _warn_on_version_mismatch(host, health)
        for field, (tag, pinned) in self.pin_images().items():
            print(f"pinned {field}: {tag} is {pinned.rsplit('@', 1)[1]}", file=sys.stderr)
        import kfp

        with tempfile.TemporaryDirectory() as folder, _client_output_to_stderr():
            package = self.compile(Path(folder) / "pipeline.yaml")
            try:
                client = kfp.Client(host=host)
                result = self._submit(client, package, host)
                if self.options.wait:
                    result.update(self._wait(client, result["run"], result["url"], host))
            except SubmitError:
                raise
            except Exception as exc:  # the client raises transport, API and its own errors
                raise SubmitError(describe_error(exc, host)) from exc
        return result

    def _submit(self, client: Any, package: Path, host: str) -> dict[str, Any]:
        name = self.pipeline_name()
        description = self.experiment.description or None
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        pipeline_id = client.get_pipeline_id(name)
        if pipeline_id is None:
            pipeline_id = client.upload_pipeline(
                str(package), pipeline_name=name, description=description
            ).pipeline_id
            # The upload creates the pipeline's first version; the run names it by id.
            versions = client.list_pipeline_versions(pipeline_id, page_size=1).pipeline_versions
            if not versions:
                raise SubmitError(
                    f"KFP created pipeline {name} ({pipeline_id}) but lists no version of it; "
                    "delete the pipeline in the KFP UI and submit again"
                )
            version_id = versions[0].pipeline_version_id
        else:
            digest = hashlib.sha256(package.read_bytes()).hexdigest()[:8]
            version_id = client.upload_pipeline_version(
                str(package),
                pipeline_version_name=f"{name}-{stamp}-{digest}",
                pipeline_id=pipeline_id,
                description=description,
            ).pipeline_version_id
        experiment_id = client.create_experiment(name, description=description).experiment_id
        run = client.run_pipeline(
            experiment_id=experiment_id,
            job_name=f"{name}-{stamp}",
            params=pipeline_parameters(package),
            pipeline_id=pipeline_id,
            version_id=version_id,
            pipeline_root=self.experiment.kfp.pipeline_root,
        )
        url = f"{host}/#/runs/details/{run.run_id}"
        print(f"submitted {name}: {url}", file=sys.stderr)
        return {
            "experiment": self.experiment.name,
            "target": self.name,
            "status": "SUBMITTED",
            "run": run.run_id,
            "url": url,
            "pipeline": pipeline_id,
            "pipeline_version": version_id,
            "kfp_experiment": experiment_id,
            "pipeline_root": self.experiment.kfp.pipeline_root,
            "images": self.used_images(),
        }

    def _wait(self, client: Any, run_id: str, url: str, host: str) -> dict[str, Any]:
        try:
            return self._poll(client, run_id, url, host)
        except KeyboardInterrupt:
            raise SubmitError(f"stopped waiting (interrupted); the run goes on: {url}") from None

    def _poll(self, client: Any, run_id: str, url: str, host: str) -> dict[str, Any]:
        """Poll the run until it ends; print the run's and each task's state changes."""
        started = time.monotonic()
        states: dict[str, str] = {}
        failures = 0
        while True:
            try:
                run = client.get_run(run_id)
                failures = 0
            except Exception as exc:
                failures += 1
                if failures >= self.lost_polls:
                    raise SubmitError(
                        f"{describe_error(exc, host)}; stopped waiting, the run goes on: {url}"
                    ) from exc
                time.sleep(self.poll_seconds)
                continue
            state = _state(run.state)
            tasks = _tasks(run)
            for key, label, value in [("", "run", state)] + [
                (t["id"], f"  {t['name']}", t["status"]) for t in tasks
            ]:
                if states.get(key) != value:
                    states[key] = value
                    print(f"{_clock()}  {label}: {value}", file=sys.stderr)
            if state in FINAL_STATES:
                break
            waited = time.monotonic() - started
            if self.wait_timeout_s is not None and waited > self.wait_timeout_s:
                raise SubmitError(
                    f"the run is still {state} after {waited:.0f} s; stopped waiting, it goes "
                    f"on: {url}"
                )
            time.sleep(self.poll_seconds)
        result: dict[str, Any] = {
            "status": "SUCCEEDED" if state == "SUCCEEDED" else "FAILED",
            "state": state,
            "seconds": round(time.monotonic() - started, 2),
            "tasks": [{k: t[k] for k in ("name", "status", "seconds")} for t in tasks],
        }
        if state != "SUCCEEDED":
            reason = getattr(getattr(run, "error", None), "message", None)
            result["error"] = (
                f"the run ended {state}" + (f": {reason}" if reason else "") + f"; see {url}"
            )
        return result


# --- helpers -------------------------------------------------------------------------------


def check_api(host: str, timeout: float = 10.0) -> dict[str, Any]:
    """GET the KFP health endpoint; a clear SubmitError when it is not a healthy KFP API.

    kfp.Client's own check retries five times with tracebacks in the log; this one fails fast.
    Proxies from the environment are ignored, as kfp.Client ignores them.
    """
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(host + HEALTHZ, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise SubmitError(
                f"{host} is not a KFP API ({HEALTHZ} answered 404); --host is the KFP UI or API "
                "address, e.g. http://localhost:8080 after `make kind-up`"
            ) from None
        raise SubmitError(
            f"the KFP API at {host} is not ready ({HEALTHZ} answered HTTP {exc.code} "
            f"{exc.reason}); wait until `kubectl -n kubeflow get pods` shows every pod ready"
        ) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        text = "connection refused" if isinstance(reason, ConnectionRefusedError) else str(reason)
        raise SubmitError(f"cannot reach the KFP API at {host} ({text}); {KIND_HINT}") from None
    except (TimeoutError, OSError) as exc:
        raise SubmitError(
            f"no answer from the KFP API at {host} within {timeout:.0f} s ({exc}); {KIND_HINT}"
        ) from None
    try:
        health = json.loads(body or b"{}")
    except ValueError:
        health = None
    if not isinstance(health, dict):
        raise SubmitError(
            f"{host}{HEALTHZ} did not answer JSON: {host} is not a KFP API; --host is the KFP UI "
            "or API address, e.g. http://localhost:8080 after `make kind-up`"
        )
    return health


def describe_error(exc: BaseException, host: str) -> str:
    """One line for an error of kfp.Client: what went wrong and what to check."""
    import kfp_server_api
    import urllib3

    if isinstance(exc, kfp_server_api.ApiException):
        detail = ""
        with contextlib.suppress(ValueError, TypeError):
            body = json.loads(exc.body or "")
            if isinstance(body, dict):
                detail = str(body.get("message") or body.get("error") or "")
        detail = detail or str(exc.body or "").strip()[:300]
        return f"the KFP API at {host} refused the request: HTTP {exc.status} {exc.reason}" + (
            f": {detail}" if detail else ""
        )
    if isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError):
        reason = getattr(exc, "reason", None) or exc
        return f"lost the connection to the KFP API at {host} ({reason}); {KIND_HINT}"
    return f"KFP at {host}: {exc}"


def pipeline_parameters(package: Path) -> dict[str, Any]:
    """The pipeline's parameters with their compiled defaults (the experiment's values)."""
    spec = next(d for d in yaml.safe_load_all(package.read_text()) if d is not None)
    parameters = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    return {k: p["defaultValue"] for k, p in parameters.items() if "defaultValue" in p}


@contextlib.contextmanager
def _client_output_to_stderr() -> Iterator[None]:
    """kfp.Client prints links on stdout and warns about old servers; stdout is the result's."""
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="kfp")
        yield


def _warn_on_version_mismatch(host: str, health: dict[str, Any]) -> None:
    import kfp

    server = str(health.get("tag_name") or "").lstrip("v")
    if server and server.split(".")[:2] != kfp.__version__.split(".")[:2]:
        print(
            f"warning: KFP at {host} is {server}, this SDK is {kfp.__version__}; "
            "infra/kind installs the matching version",
            file=sys.stderr,
        )


def _state(value: Any) -> str:
    return str(value or "PENDING").rsplit(".", 1)[-1].upper()


def _tasks(run: Any) -> list[dict[str, Any]]:
    details = getattr(getattr(run, "run_details", None), "task_details", None) or []
    tasks = []
    for task in details:
        # Unset times come back as the epoch.
        start, end = (t if t and t.year > 1970 else None for t in (task.start_time, task.end_time))
        seconds = (end - start).total_seconds() if start and end else 0.0
        tasks.append(
            {
                "id": task.task_id or task.display_name,
                "name": task.display_name or task.task_id,
                "status": _state(task.state),
                "seconds": round(max(seconds, 0.0), 2),
            }
        )
    return tasks


def _clock() -> str:
    return datetime.now().strftime("%H:%M:%S")
