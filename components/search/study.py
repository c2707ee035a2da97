"""The Optuna study of one searched candidate, kept as a journal that travels between tasks.

Each round is `suggest` (Optuna ask: `parallel_trials` new trials) -> one train task per trial
-> `tell` (each trial's validation curve and best value). A task reads the journal its upstream
task wrote (an artifact), works on a private copy and writes the grown journal as its own output,
so every task is a pure function of its inputs: KFP caches and retries it like any other step,
and a rerun with more trials replays the cached rounds and continues the same study.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from components.common.model_card import ModelCard
from components.spec import (
    Candidate,
    Distribution,
    ModelSpec,
    Pruning,
    SearchOutcome,
    Study,
    apply_overrides,
)

JOURNAL_FILE = "journal.log"
SUMMARY_FILE = "summary.json"  # beside the journal in a tell step's study artifact
# MedianPruner: a trial may stop once this many trials have finished and after this many epochs.
PRUNE_WARMUP_EPOCHS = 2


def distribution(spec: Distribution) -> Any:
    """The Optuna distribution of one `space` entry."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if spec.log_uniform is not None:
        return FloatDistribution(*spec.log_uniform, log=True)
    if spec.uniform is not None:
        return FloatDistribution(*spec.uniform)
    if spec.int_range is not None:
        return IntDistribution(*spec.int_range)
    assert spec.choice is not None
    return CategoricalDistribution(spec.choice)


def sampler(search: Study, seed: int, finished: int) -> Any:
    """The sampler of one suggest task. It is re-created in every task, so its seed also counts
    the trials already in the study: each round draws new points, and a rerun the same ones."""
    import optuna

    round_seed = seed * 1_000_003 + finished
    if search.algorithm == "random":
        return optuna.samplers.RandomSampler(seed=round_seed)
    if search.algorithm == "grid":
        # The seed shuffles the grid, and grid points are numbered in that order: it must not
        # change between rounds, or a round would revisit points under new numbers.
        return optuna.samplers.GridSampler(
            {path: d.choice or [] for path, d in search.space.items()}, seed=seed
        )
    # TPE after one round of random points; the constant liar keeps a round's trials apart.
    return optuna.samplers.TPESampler(
        seed=round_seed,
        n_startup_trials=search.parallel_trials,
        multivariate=True,
        constant_liar=True,
    )


@contextmanager
def study_copy(
    journal_in: str | Path | None,
    journal_out: str | Path,
    spec: ModelSpec,
    config: Study,
    seed: int,
    asking: bool = True,
) -> Iterator[Any]:
    """Open the study of candidate `spec` from `journal_in` (None: a new study, whose sampler
    seed is `seed`) on a private copy; on a clean exit, write the journal to `journal_out`.
    Only `asking` opens it with the configured sampler: telling needs none, and GridSampler's
    after-trial hook would stop the study, which Optuna allows only inside `optimize`."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="study-") as work:
        journal = Path(work) / JOURNAL_FILE
        if journal_in is not None:
            source = Path(journal_in) / JOURNAL_FILE
            if not source.is_file():
                raise FileNotFoundError(
                    f"{journal_in} holds no {JOURNAL_FILE}: it is not a study written by the "
                    "suggest or tell step"
                )
            shutil.copyfile(source, journal)
        from optuna.storages.journal import JournalFileBackend

        storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
        finished = 0
        if journal_in is not None:
            existing = optuna.load_study(study_name=spec.name, storage=storage)
            finished = len(existing.get_trials(deepcopy=False))
            seed = int(existing.user_attrs["seed"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study = optuna.create_study(
                study_name=spec.name,
                storage=storage,
                direction=config.direction,
                sampler=(
                    sampler(config, seed, finished)
                    if asking
                    else optuna.samplers.RandomSampler(seed=seed)
                ),
                load_if_exists=True,
            )
        if journal_in is None:
            study.set_user_attr("model_spec", base_spec(spec))
            study.set_user_attr(
                "study", config.model_dump(mode="json", by_alias=True, exclude_none=True)
            )
            study.set_user_attr("seed", seed)
        yield study
        out = Path(journal_out)
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(journal, out / JOURNAL_FILE)


def base_spec(spec: ModelSpec) -> dict[str, Any]:
    """The candidate's own recipe, without its search section: what every trial starts from."""
    return spec.model_dump(mode="json", exclude={"search"}, exclude_none=True)


def suggest(
    journal_in: str | Path | None,
    journal_out: str | Path,
    model_spec: ModelSpec | dict[str, Any],
    study_config: Study | dict[str, Any],
    seed: int,
    count: int,
) -> list[dict[str, Any]]:
    """Ask the study for `count` new trials; return them as train-task candidates."""
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
        prune = pruning(study, config)
        for _ in range(count):
            trial = study.ask(space)
            candidate = Candidate(
                model_spec=ModelSpec.model_validate(apply_overrides(base_spec(spec), trial.params)),
                seed=seed,
                trial=trial.number,
                prune=prune,
            )
            candidates.append(candidate.model_dump(mode="json", exclude_none=True, by_alias=True))
    return candidates


def pruning(study: Any, search: Study) -> Pruning | None:
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
        warmup_epochs=PRUNE_WARMUP_EPOCHS,
    )


def trial_value(card: ModelCard, metric: str, direction: str) -> tuple[list[float], float]:
    """The trial's per-epoch `metric` and its best epoch's value (the objective)."""
    curve = [float(v) for v in card.history.get(metric, [])]
    if not curve:
        raise ValueError(
            f"trial model {card.name} has no {metric} in its history: a search needs a "
            "validation split (data.splits.validation above 0)"
        )
    return curve, (max(curve) if direction == "maximize" else min(curve))


def tell(
    journal_in: str | Path,
    journal_out: str | Path,
    model_spec: ModelSpec | dict[str, Any],
    study_config: Study | dict[str, Any],
    trial_models: list[tuple[str | Path, str]],
) -> dict[str, Any]:
    """Tell the study each trial's result: `trial_models` are (folder, URI) of the round's trial
    Models. Returns the study's summary (see `summarize`)."""
    import optuna

    spec = ModelSpec.model_validate(model_spec)
    config = Study.model_validate(study_config)
    # The study exists already (its seed was set by the first suggest).
    with study_copy(journal_in, journal_out, spec, config, 0, asking=False) as study:
        by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
        for folder, uri in trial_models:
            card = ModelCard.load(folder)
            number = card.training.get("trial")
            if number not in by_number:
                raise ValueError(
                    f"{folder} is not a trial of study {spec.name} (trial {number!r}); pass the "
                    "Models of the round that this study suggested"
                )
            frozen = by_number[number]
            if frozen.state != optuna.trial.TrialState.RUNNING:
                continue  # told before: a retried tell task
            curve, value = trial_value(card, config.metric, config.direction)
            trial = optuna.trial.Trial(study, frozen._trial_id)
            for epoch, metric_value in enumerate(curve):
                trial.report(metric_value, epoch)
            trial.set_user_attr("history", card.history)
            trial.set_user_attr("model_uri", uri)
            stopped_at = card.training.get("pruned_at_epoch")
            trial.set_user_attr("pruned_at_epoch", stopped_at)
            if stopped_at is not None:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                study.tell(trial, value)
        return summarize(study)


def summarize(study: Any) -> dict[str, Any]:
    """Every trial (number, state, value, params, epochs) and the best finished one."""
    import optuna

    search = Study.model_validate(study.user_attrs["study"])
    trials = []
    for t in study.get_trials(deepcopy=False):
        curve = [t.intermediate_values[s] for s in sorted(t.intermediate_values)]
        trials.append(
            {
                "trial": t.number,
                "state": t.state.name,
                "value": t.value
                if t.value is not None
                else (_best(curve, search) if curve else None),
                "params": dict(t.params),
                "epochs": len(curve),
                "pruned_at_epoch": t.user_attrs.get("pruned_at_epoch"),
                "model_uri": t.user_attrs.get("model_uri", ""),
            }
        )
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    best = None
    if complete:
        winner = study.best_trial
        best = {
            "trial": winner.number,
            "value": winner.value,
            "params": dict(winner.params),
            "history": winner.user_attrs.get("history", {}),
            "model_uri": winner.user_attrs.get("model_uri", ""),
        }
    return {
        "study": study.study_name,
        "metric": search.metric,
        "direction": search.direction,
        "algorithm": search.algorithm,
        "space": {p: d.to_yaml() for p, d in search.space.items()},
        "trials": trials,
        "best": best,
    }


def _best(curve: list[float], search: Study) -> float:
    return max(curve) if search.direction == "maximize" else min(curve)


def winner_candidates(
    summary: dict[str, Any], base: dict[str, Any], seeds: list[int]
) -> list[dict[str, Any]]:
    """The best trial's recipe once per seed: the candidates that retrain the winner."""
    best = summary["best"]
    if best is None:
        raise ValueError(
            f"study {summary['study']}: no trial finished (every trial was stopped early); "
            "raise search.trials or drop search.early_stop"
        )
    outcome = SearchOutcome(
        study=summary["study"],
        metric=summary["metric"],
        trials=len(summary["trials"]),
        best_trial=best["trial"],
        value=best["value"],
        params=best["params"],
    )
    spec = ModelSpec.model_validate(apply_overrides(base, best["params"]))
    return [
        Candidate(model_spec=spec, seed=int(seed), searched=outcome).model_dump(
            mode="json", exclude_none=True, by_alias=True
        )
        for seed in seeds
    ]
