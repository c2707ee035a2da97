"""Experiment tracking: one interface (`Tracker`) the track steps record a pipeline run through,
with an MLflow backend, a Vertex AI Experiments backend, a fan-out to several and a null one.

A pipeline run is one parent run; each candidate x seed a nested run under it with its
parameters, its metrics per epoch (step = epoch, counted from 1), its final test metrics, links
to its artifacts and the tags of the run (experiment, target, commit, data snapshot, candidate,
seed). The registered version is mirrored into the backend's model registry, with the champion
alias only when the folder registry promoted it.

Tracking never fails or slows a run: every call goes through `Guarded`, which on the first error
prints ONE warning line and turns the tracker off for the rest of the step. The MLflow client is
imported only when a tracking URI is set, and it is told not to retry and to give up on a
request after a few seconds, so a dead server costs one refused connection.

In Vertex AI Experiments each candidate x seed is one experiment run (parameters, the test
metrics and the best epoch's validation metrics; the metrics per epoch only when the experiment
has a backing TensorBoard). The pipeline run itself is already one of the experiment's runs: the
submit associates the pipeline job with the experiment. The registered version reaches the
Vertex Model Registry through the pipeline's own upload, so this backend mirrors nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

# An unreachable server must not hold a run up: no retries, a short timeout (seconds).
# The run links go into the tags and the step's one line, not a print per run.
MLFLOW_CLIENT_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
CHAMPION_ALIAS = "champion"
PIPELINE_RUN_TAG = "pipeline_run"  # the parent's key: the KFP pipeline run's id
ROLE_TAG = "role"  # "pipeline" (the parent) or "training" (a candidate x seed)
WARNING_PREFIX = "warning: tracking off"
# How the lines name the backends: "MLflow at <uri>", "Vertex AI Experiments <experiment>".
MLFLOW_LABEL, VERTEX_LABEL = "MLflow", "Vertex AI Experiments"
# MLflow's batch limits per request.
MAX_PARAMS, MAX_TAGS, MAX_METRICS = 100, 100, 1000
MAX_PARAM_LENGTH = 6000


@dataclass
class TrainingRun:
    """One candidate x seed as a tracker records it."""

    candidate: str
    seed: int
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    epochs: dict[str, list[float]] = field(default_factory=dict)  # metric -> value per epoch
    final: dict[str, float] = field(default_factory=dict)  # test metrics, no step
    links: dict[str, str] = field(default_factory=dict)  # artifact name -> URI
    error: str | None = None  # the run failed (compare.on_failure: continue)

    @property
    def name(self) -> str:
        return f"{self.candidate}-seed{self.seed}"


class Tracker(Protocol):
    """What the track steps call; a backend records it, `NullTracker` ignores it."""

    def start_pipeline_run(
        self, key: str, name: str, params: dict[str, str], tags: dict[str, str]
    ) -> None:
        """Open (or, for the same `key`, reopen) the parent run of a pipeline run."""
        ...

    def log_training(self, run: TrainingRun) -> None:
        """Record one candidate x seed as a nested run of the parent."""
        ...

    def finish_pipeline_run(self, metrics: dict[str, float], tags: dict[str, str]) -> None:
        """Log the pipeline run's own results and close it."""
        ...

    def mirror_registration(
        self, name: str, version: str, source: str, candidate: str, seed: int, champion: bool
    ) -> None:
        """Mirror a registered version (and the champion alias when `champion`)."""
        ...


class NullTracker:
    """No tracking configured: every call does nothing."""

    def start_pipeline_run(
        self, key: str, name: str, params: dict[str, str], tags: dict[str, str]
    ) -> None:
        return None

    def log_training(self, run: TrainingRun) -> None:
        return None

    def finish_pipeline_run(self, metrics: dict[str, float], tags: dict[str, str]) -> None:
        return None

    def mirror_registration(
        self, name: str, version: str, source: str, candidate: str, seed: int, champion: bool
    ) -> None:
        return None


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _quoted(value: str) -> str:
    return "'" + value.replace("'", "\\'") + "'"


class MlflowTracker:
    """Records into an MLflow tracking server (or any tracking URI the client takes)."""

    def __init__(self, uri: str, experiment: str):
        for name, value in MLFLOW_CLIENT_ENV.items():
            os.environ.setdefault(name, value)
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = (
            found.experiment_id if found else self.client.create_experiment(experiment)
        )
        self.parent_id: str | None = None
        self.parent_tags: dict[str, str] = {}

    def _find(self, filters: list[str]) -> list[Any]:
        return list(
            self.client.search_runs(
                [self.experiment_id], filter_string=" and ".join(filters), max_results=50
            )
        )

    def start_pipeline_run(
        self, key: str, name: str, params: dict[str, str], tags: dict[str, str]
    ) -> None:
        # Keyed on the pipeline run: a retried or restarted track step reopens its parent.
        found = self._find(
            [f"tags.{PIPELINE_RUN_TAG} = {_quoted(key)}", f"tags.{ROLE_TAG} = 'pipeline'"]
        )
        self.parent_tags = {**tags, PIPELINE_RUN_TAG: key}
        if found:
            self.parent_id = found[0].info.run_id
            return
        run = self.client.create_run(
            self.experiment_id,
            run_name=name,
            tags={**self.parent_tags, ROLE_TAG: "pipeline"},
        )
        self.parent_id = run.info.run_id
        self._log(self.parent_id, params=params)

    def _log(
        self,
        run_id: str,
        params: dict[str, str] | None = None,
        metrics: list[tuple[str, float, int]] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        from mlflow.entities import Metric, Param, RunTag

        stamp = int(time.time() * 1000)
        for batch in _chunks(sorted((params or {}).items()), MAX_PARAMS):
            self.client.log_batch(
                run_id, params=[Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in batch]
            )
        for batch in _chunks(sorted((tags or {}).items()), MAX_TAGS):
            self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in batch])
        for batch in _chunks(list(metrics or []), MAX_METRICS):
            self.client.log_batch(
                run_id, metrics=[Metric(k, float(v), stamp, step) for k, v, step in batch]
            )

    def _parent(self) -> str:
        if self.parent_id is None:
            raise RuntimeError("no pipeline run started: call start_pipeline_run first")
        return self.parent_id

    def _training_run_id(self, candidate: str, seed: int) -> str | None:
        found = self._find(
            [
                f"tags.`mlflow.parentRunId` = {_quoted(self._parent())}",
                f"tags.candidate = {_quoted(candidate)}",
                f"tags.seed = {_quoted(str(seed))}",
            ]
        )
        return found[0].info.run_id if found else None

    def log_training(self, run: TrainingRun) -> None:
        parent = self._parent()
        if self._training_run_id(run.candidate, run.seed) is not None:
            return  # recorded by an earlier attempt of this step
        tags = {
            **self.parent_tags,
            **run.tags,
            "candidate": run.candidate,
            "seed": str(run.seed),
            ROLE_TAG: "training",
            "mlflow.parentRunId": parent,
            **{f"artifact.{k}": v for k, v in run.links.items()},
        }
        if run.error:
            tags["error"] = run.error
        created = self.client.create_run(self.experiment_id, run_name=run.name, tags=tags)
        run_id = created.info.run_id
        metrics = [
            (key, value, epoch)
            for key, values in sorted(run.epochs.items())
            for epoch, value in enumerate(values, start=1)
        ]
        metrics += [(f"test_{key}", value, 0) for key, value in sorted(run.final.items())]
        self._log(run_id, params=run.params, metrics=metrics)
        self.client.set_terminated(run_id, status="FAILED" if run.error else "FINISHED")

    def finish_pipeline_run(self, metrics: dict[str, float], tags: dict[str, str]) -> None:
        parent = self._parent()
        self._log(parent, metrics=[(k, v, 0) for k, v in sorted(metrics.items())], tags=tags)
        self.client.set_terminated(parent, status="FINISHED")

    def mirror_registration(
        self, name: str, version: str, source: str, candidate: str, seed: int, champion: bool
    ) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(
                name, description="mirrored from the project's folder registry"
            )
        mirrored = [
            v
            for v in self.client.search_model_versions(f"name = {_quoted(name)}")
            if v.tags.get("registry_version") == version
        ]
        if mirrored:
            number = mirrored[0].version
        else:
            run_id = self._training_run_id(candidate, seed)
            # The server takes a local folder as a source only inside a run's artifacts: the
            # version points at the training's run and names the registry folder in a tag.
            remote = "://" in source and not source.startswith("file:")
            created = self.client.create_model_version(
                name,
                source=source if remote or run_id is None else f"runs:/{run_id}/model",
                run_id=run_id,
                tags={
                    **self.parent_tags,
                    "registry_version": version,
                    "registry_path": source,
                    "candidate": candidate,
                    "seed": str(seed),
                },
                await_creation_for=0,
            )
            number = created.version
        if champion:
            self.client.set_registered_model_alias(name, CHAMPION_ALIAS, str(number))


# A Vertex AI Experiments run is a metadata context `<experiment>-<run>`: ids of at most 128
# characters of [a-z0-9-].
VERTEX_ID_LENGTH = 128


def vertex_run_name(experiment: str, pipeline_run: str, candidate: str, seed: int) -> str:
    """The experiment run of a candidate x seed: `<pipeline run>-<candidate>-seed<seed>` in
    lower-case letters, digits and '-'; shortened with a hash of the whole when too long."""
    whole = f"{pipeline_run}-{candidate}-seed{seed}"
    name = re.sub(r"[^a-z0-9]+", "-", whole.lower()).strip("-") or "run"
    room = VERTEX_ID_LENGTH - len(experiment) - 1
    if len(name) > room:
        digest = hashlib.sha256(whole.encode()).hexdigest()[:8]
        name = name[: room - len(digest) - 1].rstrip("-") + "-" + digest
    return name


def best_validation(run: TrainingRun) -> dict[str, float]:
    """The validation metrics of the run's best epoch (tag `best_epoch`, counted from 1)."""
    best = run.tags.get("best_epoch", "")
    if not best.isdigit() or int(best) < 1:
        return {}
    return {
        f"best_{key}": float(values[int(best) - 1])
        for key, values in sorted(run.epochs.items())
        if key.startswith("val_") and len(values) >= int(best)
    }


class VertexExperimentsTracker:
    """Records each candidate x seed as a run of a Vertex AI Experiments experiment."""

    def __init__(self, project: str, location: str, experiment: str):
        self.project = project
        self.location = location
        self.experiment = experiment
        self.pipeline_run = ""
        self.pipeline_tags: dict[str, str] = {}
        # whether the experiment has a backing TensorBoard; None until the client is set up
        self._time_series: bool | None = None

    def _aiplatform(self) -> Any:
        from google.cloud import aiplatform

        if self._time_series is None:
            # Gets (or creates) the experiment; the project and region default to the step's.
            # No TensorBoard is created for it: per-epoch series only go to one it already has.
            aiplatform.init(
                project=self.project or None,
                location=self.location or None,
                experiment=self.experiment,
                experiment_tensorboard=False,
            )
            found = aiplatform.Experiment(self.experiment)
            self._time_series = bool(found.backing_tensorboard_resource_name)
        return aiplatform

    def start_pipeline_run(
        self, key: str, name: str, params: dict[str, str], tags: dict[str, str]
    ) -> None:
        # Nothing to open: the submit made the pipeline job one of the experiment's runs.
        self.pipeline_run = key
        self.pipeline_tags = {**tags, PIPELINE_RUN_TAG: key}

    def log_training(self, run: TrainingRun) -> None:
        aiplatform = self._aiplatform()
        name = vertex_run_name(self.experiment, self.pipeline_run, run.candidate, run.seed)
        # a retried step resumes the run an earlier attempt created
        exists = aiplatform.ExperimentRun.get(name, experiment=self.experiment) is not None
        aiplatform.start_run(name, resume=exists)
        params: dict[str, str] = {
            **run.params,
            **self.pipeline_tags,
            **run.tags,
            "candidate": run.candidate,
            "seed": str(run.seed),
            **{f"artifact.{k}": v for k, v in run.links.items()},
        }
        if run.error:
            params["error"] = run.error[:MAX_PARAM_LENGTH]
        aiplatform.log_params(params)
        metrics = {f"test_{k}": float(v) for k, v in sorted(run.final.items())}
        metrics.update(best_validation(run))
        if metrics:
            aiplatform.log_metrics(metrics)
        if self._time_series:
            for epoch, values in epoch_rows(run.epochs):
                aiplatform.log_time_series_metrics(values, step=epoch)
        state = aiplatform.gapic.Execution.State
        aiplatform.end_run(state=state.FAILED if run.error else state.COMPLETE)

    def finish_pipeline_run(self, metrics: dict[str, float], tags: dict[str, str]) -> None:
        return None  # the pipeline job's own metrics artifacts show on its experiment run

    def mirror_registration(
        self, name: str, version: str, source: str, candidate: str, seed: int, champion: bool
    ) -> None:
        return None  # the pipeline uploads the version to the Vertex Model Registry itself


def epoch_rows(epochs: dict[str, list[float]]) -> Iterator[tuple[int, dict[str, float]]]:
    """`{"loss": [a, b]}` -> (1, {"loss": a}), (2, {"loss": b}): one row per epoch."""
    count = max((len(values) for values in epochs.values()), default=0)
    for index in range(count):
        row = {k: float(v[index]) for k, v in sorted(epochs.items()) if index < len(v)}
        yield index + 1, row


class FanOut:
    """Several trackers (each its own `Guarded`) called in turn: one failing turns off only
    itself."""

    def __init__(self, trackers: list[Guarded]):
        self.trackers = trackers

    @property
    def warnings(self) -> list[str]:
        return [t.warning for t in self.trackers if t.warning is not None]

    def start_pipeline_run(
        self, key: str, name: str, params: dict[str, str], tags: dict[str, str]
    ) -> None:
        for tracker in self.trackers:
            tracker.start_pipeline_run(key, name, params, tags)

    def log_training(self, run: TrainingRun) -> None:
        for tracker in self.trackers:
            tracker.log_training(run)

    def finish_pipeline_run(self, metrics: dict[str, float], tags: dict[str, str]) -> None:
        for tracker in self.trackers:
            tracker.finish_pipeline_run(metrics, tags)

    def mirror_registration(
        self, name: str, version: str, source: str, candidate: str, seed: int, champion: bool
    ) -> None:
        for tracker in self.trackers:
            tracker.mirror_registration(name, version, source, candidate, seed, champion)


def _first_line(exc: BaseException) -> str:
    lines = f"{type(exc).__name__}: {exc}".strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 240 else text[:237] + "..."


class Guarded:
    """A tracker whose failures are one warning line: the first error (including one opening
    the backend) is reported, and from then on every call does nothing."""

    def __init__(self, label: str, opener: Callable[[], Any]):
        self.label = label
        self._opener = opener
        self._backend: Any = None
        self.warning: str | None = None

    @property
    def on(self) -> bool:
        return self.warning is None

    def _call(self, method: str, *args: Any, **kwargs: Any) -> None:
        if self.warning is not None:
            return
        try:
            if self._backend is None:
                self._backend = self._opener()
            getattr(self._backend, method)(*args, **kwargs)
        except Exception as exc:  # a tracking error of any kind must not fail the run
            self.warning = f"{WARNING_PREFIX}: {self.label} failed ({_first_line(exc)})"
            print(self.warning, file=sys.stderr, flush=True)

    def start_pipeline_run(
        self, key: str, name: str, params: dict[str, str], tags: dict[str, str]
    ) -> None:
        self._call("start_pipeline_run", key, name, params, tags)

    def log_training(self, run: TrainingRun) -> None:
        self._call("log_training", run)

    def finish_pipeline_run(self, metrics: dict[str, float], tags: dict[str, str]) -> None:
        self._call("finish_pipeline_run", metrics, tags)

    def mirror_registration(
        self, name: str, version: str, source: str, candidate: str, seed: int, champion: bool
    ) -> None:
        self._call("mirror_registration", name, version, source, candidate, seed, champion)


def open_mlflow(uri: str, experiment: str) -> Guarded:
    """The MLflow tracker of `uri`, opened on first use; its errors are one warning line."""
    return Guarded(f"{MLFLOW_LABEL} at {uri}", lambda: MlflowTracker(uri, experiment))


def open_vertex_experiments(project: str, location: str, experiment: str) -> Guarded:
    """The Vertex AI Experiments tracker of `experiment`; its errors are one warning line."""
    return Guarded(
        f"{VERTEX_LABEL} {experiment}",
        lambda: VertexExperimentsTracker(project, location, experiment),
    )


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """`{"optimizer": {"name": "adam"}}` -> `{"optimizer.name": "adam"}`: parameters as text."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif value is not None:
            flat[name] = str(value)
    return flat
