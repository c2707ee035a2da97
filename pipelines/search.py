"""The search of one candidate as pipeline structure: rounds of suggest -> trials -> tell, then the
winner, and the candidate's untuned recipe beside it, trained once per seed. Wiring only; the study
lives in components/search."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kfp import dsl

from components.evaluate.component import evaluate
from components.search.component import gather, suggest, tell
from components.search.journal import base_spec
from components.spec import ModelSpec
from components.train.component import train

if TYPE_CHECKING:
    from pipelines.hooks import TaskHooks


def add_search(
    spec: ModelSpec, seeds: list[int], dataset: Any, reference: Any, target: TaskHooks
) -> Any:
    """Add the search of `spec` (rounds of `parallel_trials` trials on the first seed, each
    trial one train task per fold) and the winner's training and evaluation on every seed;
    returns the winner's collected results."""
    assert spec.search is not None
    base = base_spec(spec)
    study = spec.search.study().model_dump(mode="json", by_alias=True, exclude_none=True)
    rounds = spec.search.rounds()
    previous: dict[str, Any] = {}
    tell_task: Any = None
    for index, count in enumerate(rounds, start=1):
        label = f"search {spec.name} {index}/{len(rounds)}"
        suggest_task = suggest(
            model_spec=base, study_config=study, seed=seeds[0], count=count, **previous
        ).set_display_name(f"{label}: suggest")
        target.configure(suggest_task, "suggest")
        with dsl.ParallelFor(
            suggest_task.outputs["Output"], parallelism=target.parallelism
        ) as trial:
            trial_task = target.component_for("train", train, spec.framework)(
                dataset=dataset, candidate=trial
            ).set_display_name(f"{label}: trial")
            target.configure(trial_task, "train", spec.framework)
        tell_task = tell(
            model_spec=base,
            study_config=study,
            seeds=list(seeds),
            dataset=dataset,
            previous=suggest_task.outputs["study"],
            trial_models=dsl.Collected(trial_task.outputs["model"]),
        ).set_display_name(f"{label}: tell")
        target.configure(tell_task, "tell")
        previous = {"previous": tell_task.outputs["study"]}
    with dsl.ParallelFor(tell_task.outputs["Output"], parallelism=target.parallelism) as winner:
        train_task = target.component_for("train", train, spec.framework)(
            dataset=dataset, candidate=winner
        ).set_display_name(f"train {spec.name} (search winner and untuned recipe)")
        target.configure(train_task, "train", spec.framework)
        evaluate_task = evaluate(
            dataset=dataset, model=train_task.outputs["model"], reference=reference
        ).set_display_name(f"evaluate {spec.name} (search winner and untuned recipe)")
        target.configure(evaluate_task, "evaluate", spec.framework)
    return dsl.Collected(evaluate_task.outputs["Output"])


def search_tasks(experiment_models: list[ModelSpec], seeds: list[int]) -> int:
    """How many tasks `add_searches` adds: per round a suggest, its trials' trainings (one per
    trial and fold) and a tell; train and evaluate of the winner and of the untuned recipe per
    seed (the untuned ones are left out when the search keeps the recipe); a gather per searched
    candidate after the first."""
    total = 0
    for spec in experiment_models:
        assert spec.search is not None
        rounds = spec.search.rounds()
        total += 2 * len(rounds) + sum(rounds) * spec.search.folds + 2 * 2 * len(seeds)
    return total + max(len(experiment_models) - 1, 0)


def add_searches(
    experiment_models: list[ModelSpec],
    seeds: list[int],
    dataset: Any,
    reference: Any,
    target: TaskHooks,
) -> dict[str, Any]:
    """Every searched candidate's search; their winners' results as the compare step's
    `searched_results` (nothing when no candidate searches)."""
    results = [add_search(m, seeds, dataset, reference, target) for m in experiment_models]
    if not results:
        return {}
    joined = results[0]
    for more in results[1:]:
        join_task = gather(first=joined, second=more).set_display_name("gather search winners")
        target.configure(join_task, "gather")
        joined = join_task.output
    return {"searched_results": joined}
