"""The track steps: record a pipeline run (one parent, a nested run per candidate x seed) and
mirror its registered version, through `components.common.tracking`: in MLflow and, on the
vertex target with `gcp.experiment`, in Vertex AI Experiments (an experiment run per candidate x
seed; the Vertex Model Registry gets the version from the pipeline's own upload).

Both return one line that says what was recorded or, when tracking failed, the warning; the
local console shows it as the task's figure. Nothing here raises for a tracking error.
"""

from __future__ import annotations

from pathlib import Path

from components.common.files import local_path
from components.common.model_card import CARD_FILE, ModelCard
from components.common.results import CompareSummary, EvaluationResult, RegistrationRecord
from components.common.tracking import (
    MLFLOW_LABEL,
    VERTEX_LABEL,
    WARNING_PREFIX,
    FanOut,
    Guarded,
    NullTracker,
    Tracker,
    TrainingRun,
    flatten,
    open_mlflow,
    open_vertex_experiments,
)
from components.register.champion import MODEL_DIR
from components.spec.tracking import TrackingSpec

CURVES_DIR = "curves"  # the train task's curves output, beside its model


def tracker_for(spec: TrackingSpec, registration: bool = False) -> Tracker:
    """The trackers `spec` asks for (both, each guarded on its own, when it names MLflow and
    Vertex AI Experiments); NullTracker when it names none. `registration`: only those that
    mirror a registered version (MLflow)."""
    trackers: list[Guarded] = []
    if spec.mlflow:
        trackers.append(open_mlflow(spec.mlflow, spec.mlflow_experiment or spec.experiment))
    if spec.vertex_experiment and not registration:
        trackers.append(
            open_vertex_experiments(spec.project, spec.location, spec.vertex_experiment)
        )
    if not trackers:
        return NullTracker()
    return trackers[0] if len(trackers) == 1 else FanOut(trackers)


def backends(spec: TrackingSpec) -> str:
    """Where `spec` records runs, in words: "MLflow", "Vertex AI Experiments" or both."""
    names = [MLFLOW_LABEL] if spec.mlflow else []
    if spec.vertex_experiment:
        names.append(VERTEX_LABEL)
    return " and ".join(names)


def training_run(result: EvaluationResult) -> TrainingRun:
    """A candidate x seed from its evaluate result and the Model card its training wrote."""
    run = TrainingRun(candidate=result.name, seed=result.seed, final=dict(result.metrics))
    run.links["model"] = result.model_uri
    run.tags["framework"] = result.framework
    model_dir = local_path(result.model_uri)
    if (model_dir / CARD_FILE).is_file():
        card = ModelCard.load(model_dir)
        run.epochs = {k: list(v) for k, v in card.history.items()}
        run.params = flatten(card.training.get("spec") or {})
        run.params["seed"] = str(card.seed)
        outcome = card.training.get("outcome") or {}
        if outcome.get("best_epoch"):
            run.tags["best_epoch"] = str(outcome["best_epoch"])
    curves = Path(model_dir).parent / CURVES_DIR
    if curves.exists():
        run.links["curves"] = str(curves)
    return run


def outcome_line(tracker: Tracker, done: str) -> str:
    """What the step says: `done`, or the warning when tracking failed. With several trackers,
    the warnings when all failed, else `done` followed by the warning of the one that failed."""
    if isinstance(tracker, NullTracker):
        return "no tracking configured"
    if isinstance(tracker, Guarded):
        return done if tracker.on else tracker.warning or ""
    if isinstance(tracker, FanOut):
        warnings = tracker.warnings
        if len(warnings) == len(tracker.trackers):
            return "; ".join(warnings)
        return "; ".join([done, *warnings])
    return done


def track_pipeline_run(
    spec: TrackingSpec,
    pipeline_run: str,
    summary: CompareSummary,
    data_snapshot: str,
    params: dict[str, str],
    tracker: Tracker | None = None,
) -> str:
    """Record the pipeline run `pipeline_run` and every candidate x seed of `summary`."""
    tracker = tracker if tracker is not None else tracker_for(spec)
    tags = spec.tags(data_snapshot)
    tracker.start_pipeline_run(pipeline_run, pipeline_run, params, tags)
    runs = [training_run(result) for result in summary.all_runs]
    # a planned run whose task failed (compare.on_failure: continue) is a FAILED nested run
    runs += [TrainingRun(f.name, f.seed, error=f.error) for f in summary.failed]
    for run in runs:
        run.tags.update(tags)
        tracker.log_training(run)
    best = summary.best
    tracker.finish_pipeline_run(
        {f"best_{k}": v for k, v in best.metrics.items()},
        {
            "best_candidate": best.name,
            "best_seed": str(best.seed),
            "gate": "passed" if summary.gate.passed else "failed",
        },
    )
    return outcome_line(
        tracker,
        f"tracked in {backends(spec)}: 1 pipeline run, {len(runs)} candidate x seed runs",
    )


def track_registration(
    spec: TrackingSpec,
    pipeline_run: str,
    record: RegistrationRecord,
    data_snapshot: str,
    tracked: str = "",
    tracker: Tracker | None = None,
) -> str:
    """Mirror the registered version of `record`; the champion alias only if it was promoted.

    `tracked` is the track step's line: when MLflow warned there, it is off for this run.
    """
    if f"{WARNING_PREFIX}: {MLFLOW_LABEL}" in tracked:
        return "not mirrored: tracking is off for this run (the track step's warning)"
    tracker = tracker if tracker is not None else tracker_for(spec, registration=True)
    decision = record.details.get("champion") or {}
    promoted = bool(decision.get("promoted"))
    tracker.start_pipeline_run(pipeline_run, pipeline_run, {}, spec.tags(data_snapshot))
    tracker.mirror_registration(
        record.name,
        record.version,
        str(Path(record.path) / MODEL_DIR),
        record.model_name or "",
        int(record.seed or 0),
        promoted,
    )
    alias = f" ({'champion' if promoted else 'not champion'})"
    return outcome_line(tracker, f"mirrored {record.name} {record.version} to MLflow" + alias)
