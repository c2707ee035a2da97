"""The training pipeline: ingest -> per framework, ParallelFor(candidate x seed): train -> evaluate
(and for a searched candidate its search, then its winner per seed) -> compare -> gate -> [export]
-> register. Wiring only: the whole DAG is here, in `pipelines/search.py` and in
`pipelines/registration.py`; a target only configures tasks through the `TaskHooks` it passes in.
"""

from collections.abc import Callable
from typing import Any

from kfp import dsl

from components.compare.component import compare
from components.evaluate.component import evaluate
from components.gate.component import gate
from components.ingest.component import ingest
from components.track.component import track
from components.train.component import train
from pipelines.config import Experiment
from pipelines.hooks import TaskHooks
from pipelines.registration import (
    add_folder_registration,
    add_tracked_registration,
    add_vertex_registration,
)
from pipelines.search import add_searches

# The compare step's inputs that collect the evaluate results.
RESULT_INPUTS = ("keras_results", "transformers_results", "searched_results")


def build_pipeline(experiment: Experiment, target: TaskHooks) -> Callable[..., Any]:
    """Return the @dsl.pipeline for `experiment` as `target` will run it."""
    reference = (
        experiment.reference.model_dump(mode="json", exclude_none=True)
        if experiment.reference
        else {}
    )
    # Searched candidates train through their search: a framework may have no plain loop.
    tracking = target.tracking()
    tracked_params = {
        "candidates": ",".join(m.name for m in experiment.models),
        "seeds": ",".join(str(s) for s in experiment.seeds),
        "gate_metric": experiment.gate.metric,
        "gate_min": str(experiment.gate.min),
        "data_source": experiment.data.source,
    }
    groups = {
        framework: items
        for framework in experiment.frameworks()
        if (
            items := [
                c for c in experiment.candidates() if c["model_spec"]["framework"] == framework
            ]
        )
    }

    @dsl.pipeline(name=f"imgclf-{experiment.name}", description=experiment.description or None)
    def training_pipeline(
        data_config: dict = experiment.data.model_dump(mode="json", exclude_none=True),
        gate_metric: str = experiment.gate.metric,
        gate_min: float = experiment.gate.min,
        reference: dict = reference,
        model_name: str = experiment.registration.name,
        model_aliases: list = list(experiment.registration.aliases),
        registry_root: str = target.registry_root(),
        data_snapshot: str = target.data_snapshot,
    ) -> dict:
        """Trains and compares the experiment's candidate models and registers the best.

        Args:
            data_config: The experiment's data section.
            gate_metric: Metric that ranks candidates and gates registration.
            gate_min: Minimum value of gate_metric for the best model to be registered.
            reference: Reference system's result ({metric, value}).
            model_name: Name of the registered model.
            model_aliases: Aliases recorded with the registered version.
            registry_root: Folder registry the best model is copied into.
            data_snapshot: Hash of the source's listing, taken before the run: changed data
                re-runs ingest instead of reusing its cached result.

        Returns:
            The compare step's summary: table rows, best run, gate verdict.
        """
        ingest_task = ingest(data_config=data_config, data_snapshot=data_snapshot)
        ingest_task.set_display_name("ingest")
        target.configure(ingest_task, "ingest")
        collected = {}
        for framework, items in groups.items():
            with dsl.ParallelFor(items, parallelism=target.parallelism) as candidate:
                train_task = target.component_for("train", train, framework)(
                    dataset=ingest_task.outputs["dataset"],
                    candidate=candidate,
                    checkpoint_root=target.checkpoint_root(),
                    fresh=target.fresh,
                ).set_display_name(f"train {framework}")
                target.configure(train_task, "train", framework)
                evaluate_task = evaluate(
                    dataset=ingest_task.outputs["dataset"],
                    model=train_task.outputs["model"],
                    reference=reference,
                ).set_display_name(f"evaluate {framework}")
                target.configure(evaluate_task, "evaluate", framework)
            collected[f"{framework}_results"] = dsl.Collected(evaluate_task.outputs["Output"])
        searched = add_searches(
            experiment.searched(),
            experiment.seeds,
            ingest_task.outputs["dataset"],
            reference,
            target,
        )
        collected.update(searched)
        goes_on = experiment.compare.on_failure == "continue" and target.runs_past_failed_tasks
        if goes_on:
            # kfp 2.17's ignore_upstream_failure() looks up every input among the arguments
            # given (KeyError on one left to its default), so each results list is given.
            collected = {key: [] for key in RESULT_INPUTS} | collected
        compare_task = compare(
            metric=gate_metric,
            gate_min=gate_min,
            reference=reference,
            planned=experiment.planned_runs(),
            **collected,
        ).set_display_name("compare")
        if goes_on:
            # A failed train or evaluate task fails (retried, never cached); compare still runs
            # on the results of the others (triggerPolicy ALL_UPSTREAM_TASKS_COMPLETED), and the
            # planned runs without one are its failed runs.
            compare_task.ignore_upstream_failure()
        target.configure(compare_task, "compare")
        gate_task = gate(summary=compare_task.outputs["summary"]).set_display_name("gate")
        target.configure(gate_task, "gate")
        track_task = None
        if tracking:
            track_task = track(
                tracking=tracking,
                summary=compare_task.outputs["summary"],
                # The parent run's key: a retry of this pipeline run reopens the same parent.
                pipeline_run=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                data_snapshot=data_snapshot,
                params=tracked_params,
            ).set_display_name("track")
            # Every pipeline run is recorded, even when all its other steps come from the cache.
            track_task.set_caching_options(False)
            target.configure(track_task, "track")
        # A single-output task: kfp.local resolves `<task>-Output` in conditions, not named outputs.
        with dsl.If(gate_task.output == "passed", name="gate-passed"):
            register_task = add_folder_registration(
                target.configure,
                experiment,
                best_model_uri=compare_task.outputs["best_model_uri"],
                summary=compare_task.outputs["summary"],
                dataset=ingest_task.outputs["dataset"],
                registry_root=registry_root,
                name=model_name,
                aliases=model_aliases,
            )
            # Only MLflow mirrors the version: Vertex AI's registry gets it by the upload below.
            if track_task is not None and experiment.tracking.mlflow:
                add_tracked_registration(
                    target.configure,
                    tracking,
                    record=register_task.output,
                    tracked=track_task.output,
                    data_snapshot=data_snapshot,
                )
            if target.model_registry == "vertex":
                add_vertex_registration(
                    target.configure,
                    experiment,
                    record=register_task.output,
                    summary=compare_task.outputs["summary"],
                    name=model_name,
                )
        return compare_task.outputs["summary"]

    return training_pipeline
