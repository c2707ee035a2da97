"""The Optuna study of one searched candidate, kept as a journal that travels between tasks.

Each round is `suggest` (Optuna ask: `parallel_trials` new trials) -> one train task per trial
(with `folds` K >= 2, K per trial: one per fold of train + validation, components/common/folds.py)
-> `tell` (each trial's validation curve and best value; with folds, the mean over its folds,
which ranks the trials, and their spread). A task reads the journal its upstream
task wrote (an artifact), works on a private copy and writes the grown journal as its own output,
so every task is a pure function of its inputs: KFP caches and retries it like any other step,
and a rerun with more trials replays the cached rounds and continues the same study.

Here: what the search's steps call (suggest, tell, and the candidates that retrain the winner).
The journal and the sampler are in `journal.py`; reading the trial Models back and the study's
summary in `trials.py`.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

from components.common.search_summary import SearchSummary
from components.search.journal import (
    ROUND_ATTR,
    SKIPPED_ATTR,
    base_spec,
    distribution,
    rounds_so_far,
    spent_minutes,
    study_copy,
)
from components.search.trials import FoldResult, summarize, trial_folds
from components.spec import (
    Candidate,
    Fold,
    ModelSpec,
    Pruning,
    SearchOutcome,
    Study,
    apply_overrides,
)
from components.spec.search import PRUNE_PATIENCE, PRUNE_WARMUP_EPOCHS, PRUNE_WARMUP_FRACTION

SUMMARY_FILE = "summary.json"  # beside the journal in a tell step's study artifact
# The name of the candidate's own recipe, retrained beside the search's winner.
UNTUNED_SUFFIX = "-untuned"


def suggest(
    journal_in: str | Path | None,
    journal_out: str | Path,
    model_spec: ModelSpec | dict[str, Any],
    study_config: Study | dict[str, Any],
    seed: int,
    count: int,
) -> list[dict[str, Any]]:
    """Ask the study for `count` new trials; return them as train-task candidates: one per
    trial, or with `folds` K >= 2 one per trial and fold (trial-major)."""
    import optuna

    spec = ModelSpec.model_validate(model_spec)
    config = Study.model_validate(study_config)
    space = {path: distribution(d) for path, d in config.space.items()}
    candidates = []
    with (
        warnings.catch_warnings(),
        study_copy(journal_in, journal_out, spec, config, seed) as study,
    ):
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        prune = pruning(study, config, spec.epochs)
        rounds = rounds_so_far(study)
        spent = spent_minutes(study)
        skip = None
        if config.max_minutes is not None and spent >= config.max_minutes:
            skip = (
                f"search.max_minutes ({config.max_minutes:g}) was spent after {spent:.1f} min "
                f"of {len(rounds)} round(s): round {len(rounds) + 1} was not trained"
            )
        for _ in range(count):
            trial = study.ask(space)
            trial.set_user_attr(ROUND_ATTR, len(rounds) + 1)
            if skip is not None:
                trial.set_user_attr(SKIPPED_ATTR, skip)
            model = ModelSpec.model_validate(apply_overrides(base_spec(spec), trial.params))
            for fold in folds_of(config):
                candidate = Candidate(
                    model_spec=model,
                    seed=seed,
                    trial=trial.number,
                    prune=prune,
                    fold=fold,
                    skip=skip,
                )
                candidates.append(
                    candidate.model_dump(mode="json", exclude_none=True, by_alias=True)
                )
    return candidates


def folds_of(config: Study) -> list[Fold | None]:
    """The folds each trial trains on: [None] (the train split, ranked on the validation
    split) with folds 1, else folds 0 .. K - 1 of train + validation."""
    if config.folds == 1:
        return [None]
    return [Fold(index=k, count=config.folds) for k in range(config.folds)]


def ranked_examples(num_examples: dict[str, int], folds: int) -> int:
    """The images a study's trials are ranked on: the validation split, or with folds every
    image of train + validation (each in one fold's validation part)."""
    validation = int(num_examples.get("validation", 0))
    return validation if folds == 1 else validation + int(num_examples.get("train", 0))


def pruning(study: Any, search: Study, epochs: int) -> Pruning | None:
    """With early_stop: median, the finished trials' curves a new trial is measured against."""
    import optuna

    if search.early_stop != "median":
        return None
    finished = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    curves = [
        [t.intermediate_values[step] for step in sorted(t.intermediate_values)] for t in finished
    ]
    return Pruning(
        monitor=search.metric,
        direction=search.direction,
        finished_curves=curves,
        startup_trials=search.parallel_trials,
        warmup_epochs=max(PRUNE_WARMUP_EPOCHS, math.ceil(PRUNE_WARMUP_FRACTION * epochs)),
        patience=PRUNE_PATIENCE,
    )


def tell(
    journal_in: str | Path,
    journal_out: str | Path,
    model_spec: ModelSpec | dict[str, Any],
    study_config: Study | dict[str, Any],
    trial_models: list[tuple[str | Path, str]],
) -> dict[str, Any]:
    """Tell the study each trial's result: `trial_models` are (folder, URI) of the round's trial
    Models (with folds, every fold's). Returns the study's summary as the JSON of a
    `SearchSummary`, which the tell component writes as SUMMARY_FILE."""
    import optuna

    spec = ModelSpec.model_validate(model_spec)
    config = Study.model_validate(study_config)
    # The study exists already (its seed was set by the first suggest).
    with study_copy(journal_in, journal_out, spec, config, 0, asking=False) as study:
        by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
        for number, folds in trial_folds(trial_models, spec.name, set(by_number), config).items():
            frozen = by_number[number]
            if frozen.state != optuna.trial.TrialState.RUNNING:
                continue  # told before: a retried tell task
            trial = optuna.trial.Trial(study, frozen._trial_id)
            if any(card.training.get(SKIPPED_ATTR) for card, _ in folds):
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            told = FoldResult.of([card for card, _ in folds], config)
            for epoch, metric_value in enumerate(told.curve):
                trial.report(metric_value, epoch)
            trial.set_user_attr("history", told.history)
            trial.set_user_attr("model_uri", folds[0][1])
            trial.set_user_attr("pruned_at_epoch", told.pruned_at_epoch)
            if config.folds > 1:
                trial.set_user_attr("fold_values", told.values)
                trial.set_user_attr("value_std", told.std)
            if told.pruned_at_epoch is not None:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                study.tell(trial, told.value)
        return summarize(study).model_dump(mode="json")


def winner_candidates(
    summary: SearchSummary | dict[str, Any],
    base: dict[str, Any],
    seeds: list[int],
    examples: dict[str, int] | None = None,
) -> list[dict[str, Any]]:
    """The best trial's recipe once per seed: the candidates that retrain the winner; and,
    unless the search kept it, the candidate's own recipe per seed (named `<name>-untuned`),
    so the comparison measures the search's gain over the same seeds. `examples` are the
    dataset's images per split (the noise of the figures depends on them).

    With folds as without, the winner retrains on the train split and validates on the
    validation split, as every candidate does: the folds only rank the trials."""
    summary = SearchSummary.model_validate(summary)
    best = summary.best
    if best is None:
        raise ValueError(
            f"study {summary.study}: no trial finished (every trial was stopped early or "
            "left out by search.max_minutes); raise search.trials or search.max_minutes, or "
            "drop search.early_stop"
        )
    examples = examples or {}
    outcome = SearchOutcome(
        study=summary.study,
        metric=summary.metric,
        trials=len(summary.trials),
        best_trial=best.trial,
        value=best.value,
        params=best.params,
        runner_up=best.runner_up,
        validation_examples=ranked_examples(examples, summary.folds) if examples else None,
        train_examples=examples.get("train"),
        test_examples=examples.get("test"),
        folds=summary.folds,
        value_std=best.std,
        lead_se=best.lead_se,
        budget=summary.budget,
    )
    tuned = ModelSpec.model_validate(apply_overrides(base, best.params))
    runs = [(tuned, outcome)]
    untuned = ModelSpec.model_validate({**base, "name": f"{base['name']}{UNTUNED_SUFFIX}"})
    if tuned.model_dump(exclude={"name"}) != untuned.model_dump(exclude={"name"}):
        runs.append((untuned, outcome.model_copy(update={"untuned": True})))
    return [
        Candidate(model_spec=spec, seed=int(seed), searched=searched).model_dump(
            mode="json", exclude_none=True, by_alias=True
        )
        for spec, searched in runs
        for seed in seeds
    ]
