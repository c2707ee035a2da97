"""A run on KFP: upload the compiled package as a pipeline or a new version of it, start a run
in the KFP experiment of the same name; with --wait, poll it and print every state change."""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from pipelines.errors import SubmitError
from pipelines.targets.kfp.api import describe_error

FINAL_STATES = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED")


@dataclass
class Submitted:
    """What KFP made of a submission: the ids the result and the UI link name."""

    pipeline_id: str
    version_id: str
    experiment_id: str
    run_id: str


def submit(
    client: Any, package: Path, name: str, description: str | None, pipeline_root: str
) -> Submitted:
    """Upload `package` as pipeline `name` (a new version of it when it exists), create or reuse
    the KFP experiment of that name and start a run of that version."""
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
        pipeline_root=pipeline_root,
    )
    return Submitted(pipeline_id, version_id, experiment_id, run.run_id)


def wait(
    client: Any,
    run_id: str,
    url: str,
    host: str,
    every: float,
    timeout: float | None,
    lost_polls: int,
) -> dict[str, Any]:
    """`poll`, where a Ctrl-C stops the waiting, not the run."""
    try:
        return poll(client, run_id, url, host, every, timeout, lost_polls)
    except KeyboardInterrupt:
        raise SubmitError(f"stopped waiting (interrupted); the run goes on: {url}") from None


def poll(
    client: Any,
    run_id: str,
    url: str,
    host: str,
    every: float,
    timeout: float | None,
    lost_polls: int,
) -> dict[str, Any]:
    """Poll the run every `every` seconds until it ends (or `timeout` seconds, or `lost_polls`
    failed looks in a row); print the run's and each task's state changes."""
    started = time.monotonic()
    states: dict[str, str] = {}
    failures = 0
    while True:
        try:
            run = client.get_run(run_id)
            failures = 0
        except Exception as exc:
            failures += 1
            if failures >= lost_polls:
                raise SubmitError(
                    f"{describe_error(exc, host)}; stopped waiting, the run goes on: {url}"
                ) from exc
            time.sleep(every)
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
        if timeout is not None and waited > timeout:
            raise SubmitError(
                f"the run is still {state} after {waited:.0f} s; stopped waiting, it goes on: {url}"
            )
        time.sleep(every)
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


def pipeline_parameters(package: Path) -> dict[str, Any]:
    """The pipeline's parameters with their compiled defaults (the experiment's values)."""
    spec = next(d for d in yaml.safe_load_all(package.read_text()) if d is not None)
    parameters = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    return {k: p["defaultValue"] for k, p in parameters.items() if "defaultValue" in p}


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
