"""Submitting to Vertex AI Pipelines: the run's labels (experiment, git commit), its parameters,
the `aiplatform.PipelineJob` itself, and following its tasks until the run ends (--wait)."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pipelines.config import Experiment
from pipelines.errors import SubmitError
from pipelines.source import git_commit

CONSOLE = "https://console.cloud.google.com/vertex-ai/locations/{region}/pipelines/runs/{run}?project={project}"


def labels(experiment: Experiment, source_dir: Path) -> dict[str, str]:
    """The run's labels: the experiment and the commit of the source it was compiled from."""
    labels = {"experiment": experiment.name}
    commit, dirty = git_commit(source_dir)
    if commit:
        labels["git-commit"] = commit
        if dirty:
            labels["git-dirty"] = "true"
    return labels


def submit_job(
    experiment: Experiment,
    package: Path,
    pipeline_root: str | None,
    cache: bool,
    job_labels: dict[str, str],
) -> Any:
    """Create and submit the PipelineJob of the compiled `package`; SubmitError when refused."""
    from google.cloud import aiplatform

    gcp = experiment.gcp
    try:
        aiplatform.init(project=gcp.project, location=gcp.region, staging_bucket=gcp.bucket)
        job = aiplatform.PipelineJob(
            display_name=f"imgclf-{experiment.name}",
            template_path=str(package),
            pipeline_root=pipeline_root,
            parameter_values=parameter_defaults(package),
            enable_caching=cache,
            labels=job_labels,
            encryption_spec_key_name=gcp.encryption_key,
        )
        job.submit(
            service_account=gcp.service_account,
            network=gcp.network,
            experiment=gcp.experiment,
        )
    except Exception as exc:  # the SDK raises API, transport and its own errors alike
        raise SubmitError(f"Vertex AI did not take the run ({type(exc).__name__}): {exc}") from exc
    return job


def follow(
    job: Any, experiment: Experiment, poll_seconds: float, say: Callable[[str], None]
) -> dict[str, Any]:
    """Print every task's state changes until the run ends; the run's status and tasks."""
    seen: dict[str, str] = {}
    tasks: dict[str, dict[str, Any]] = {}
    while True:
        try:
            details = job.task_details
            state = job.gca_resource.state.name
        except Exception as exc:  # a lost poll should not lose the run: say where it is
            raise SubmitError(
                f"lost track of {job.resource_name} ({exc}); it goes on in Vertex AI: "
                + CONSOLE.format(
                    region=experiment.gcp.region,
                    run=job.name,
                    project=experiment.gcp.project,
                )
            ) from exc
        for task in details:
            name, status = task.task_name, task.state.name
            if seen.get(name) != status:
                seen[name] = status
                say(f"  {name}: {status}")
            seconds = 0.0
            if task.start_time and task.end_time:
                seconds = (task.end_time - task.start_time).total_seconds()
            tasks[name] = {"name": name, "status": status, "seconds": seconds}
        if state.endswith(("SUCCEEDED", "FAILED", "CANCELLED")):
            break
        time.sleep(poll_seconds)
    status = state.removeprefix("PIPELINE_STATE_")
    result: dict[str, Any] = {
        "status": "SUCCEEDED" if status == "SUCCEEDED" else "FAILED",
        "tasks": list(tasks.values()),
    }
    if status != "SUCCEEDED":
        error = job.gca_resource.error.message
        result["error"] = f"the run ended {status}" + (f": {error}" if error else "")
    return result


def parameter_defaults(package: Path) -> dict[str, Any]:
    """The compiled pipeline's parameters with their values, to show on the run."""
    import yaml

    spec = yaml.safe_load(package.read_text())
    parameters = spec["root"]["inputDefinitions"].get("parameters", {})
    return {name: p["defaultValue"] for name, p in parameters.items() if "defaultValue" in p}


@contextlib.contextmanager
def sdk_logs_to_stderr() -> Iterator[None]:
    """The aiplatform SDK logs to stdout; keep stdout for the result (--json)."""
    handlers = [
        handler
        for name, logger in logging.Logger.manager.loggerDict.items()
        if name.startswith("google.cloud.aiplatform") and isinstance(logger, logging.Logger)
        for handler in logger.handlers
        if isinstance(handler, logging.StreamHandler) and handler.stream is not sys.stderr
    ]
    streams = [handler.setStream(sys.stderr) for handler in handlers]
    try:
        yield
    finally:
        for handler, stream in zip(handlers, streams, strict=True):
            handler.setStream(stream)
