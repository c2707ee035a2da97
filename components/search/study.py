"""The Optuna study of one searched candidate, kept as a journal that travels between tasks.

Each round is `suggest` (Optuna ask: `parallel_trials` new trials) -> one train task per trial
(with `folds` K >= 2, K per trial: one per fold of train + validation, components/common/folds.py)
-> `tell` (each trial's validation curve and best value; with folds, the mean over its folds,
which ranks the trials, and their spread). A task reads the journal its upstream
task wrote (an artifact), works on a private copy and writes the grown journal as its own output,
so every task is a pure function of its inputs: KFP caches and retries it like any other step,
and a rerun with more trials replays the cached rounds and continues the same study.
"""

from __future__ import annotations

import math
import shutil
import statistics
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.common.model_card import ModelCard
from components.spec import (
    Candidate,
    Distribution,
    Fold,
    ModelSpec,
    Pruning,
    SearchOutcome,
    Study,
    apply_overrides,
)
from components.spec.search import PRUNE_PATIENCE, PRUNE_WARMUP_EPOCHS, PRUNE_WARMUP_FRACTION

JOURNAL_FILE = "journal.log"
SUMMARY_FILE = "summary.json"  # beside the journal in a tell step's study artifact
# Trial user attributes: the round a trial was asked in; why a trial was left untrained.
ROUND_ATTR = "round"
SKIPPED_ATTR = "skipped"
# The name of the candidate's own recipe, retrained beside the search's winner.
UNTUNED_SUFFIX = "-untuned"


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


def rounds_so_far(study: Any) -> dict[int, list[Any]]:
    """The study's trials by the round they were asked in."""
    rounds: dict[int, list[Any]] = {}
    for trial in study.get_trials(deepcopy=False):
        rounds.setdefault(int(trial.user_attrs.get(ROUND_ATTR, 0)), []).append(trial)
    return rounds


def spent_minutes(study: Any) -> float:
    """Wall time of the study's trained rounds: each from its first ask to its last tell (the
    times Optuna keeps in the journal, so a replayed round counts what it took then)."""
    total = 0.0
    for trials in rounds_so_far(study).values():
        trained = [t for t in trials if SKIPPED_ATTR not in t.user_attrs]
        starts = [t.datetime_start for t in trained if t.datetime_start is not None]
        ends = [t.datetime_complete for t in trained if t.datetime_complete is not None]
        if starts and ends:
            total += max((max(ends) - min(starts)).total_seconds(), 0.0) / 60
    return total


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
    Models (with folds, every fold's). Returns the study's summary (see `summarize`)."""
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
        return summarize(study)


def trial_folds(
    trial_models: list[tuple[str | Path, str]], study: str, numbers: set[int], config: Study
) -> dict[int, list[tuple[ModelCard, str]]]:
    """The round's trial Models as (card, URI) per trial number, in fold order; with folds,
    every trial must bring each of its folds once."""
    grouped: dict[int, dict[int, tuple[ModelCard, str]]] = {}
    for folder, uri in trial_models:
        card = ModelCard.load(folder)
        number = card.training.get("trial")
        if number not in numbers:
            raise ValueError(
                f"{folder} is not a trial of study {study} (trial {number!r}); pass the "
                "Models of the round that this study suggested"
            )
        fold = card.training.get("fold")
        index = int(fold["index"]) if fold else 0
        if config.folds > 1 and (not fold or int(fold["count"]) != config.folds):
            raise ValueError(
                f"{folder}: trial {number} was trained on fold {fold!r}, not on one of the "
                f"study's {config.folds} folds; pass the Models of the round that this study "
                "suggested"
            )
        if index in grouped.setdefault(int(number), {}):
            raise ValueError(f"{folder}: trial {number} fold {index} is passed twice")
        grouped[int(number)][index] = (card, uri)
    for number, folds in grouped.items():
        missing = sorted(set(range(config.folds)) - set(folds))
        if missing:
            raise ValueError(
                f"trial {number} of study {study} lacks the Models of fold(s) "
                f"{', '.join(str(k) for k in missing)} of {config.folds}"
            )
    return {n: [folds[k] for k in sorted(folds)] for n, folds in sorted(grouped.items())}


@dataclass(frozen=True)
class FoldResult:
    """What the study is told of one trial: the mean over its folds of each fold's best epoch
    (one fold: its best epoch), the mean curve and history over the epochs every fold ran, and
    the spread of the fold values."""

    value: float
    values: list[float]
    std: float | None
    curve: list[float]
    history: dict[str, list[float]]
    pruned_at_epoch: int | None

    @classmethod
    def of(cls, cards: list[ModelCard], config: Study) -> FoldResult:
        curves, values = [], []
        for card in cards:
            curve, value = trial_value(card, config.metric, config.direction)
            curves.append(curve)
            values.append(value)
        history = cards[0].history
        if len(cards) > 1:
            history = {
                name: mean_curve([[float(v) for v in c.history[name]] for c in cards])
                for name in history
                if all(c.history.get(name) for c in cards)
            }
        stopped = [
            int(c.training["pruned_at_epoch"])
            for c in cards
            if c.training.get("pruned_at_epoch") is not None
        ]
        return cls(
            value=statistics.fmean(values),
            values=values,
            std=statistics.stdev(values) if len(values) > 1 else None,
            curve=mean_curve(curves),
            history=history,
            # A trial stops early when any of its folds did: the values of its other folds
            # alone would not rank it against the trials that ran every fold.
            pruned_at_epoch=min(stopped) if stopped else None,
        )


def mean_curve(curves: list[list[float]]) -> list[float]:
    """Per epoch, the mean over the curves, for the epochs that every curve has."""
    length = min(len(c) for c in curves)
    return [statistics.fmean(c[epoch] for c in curves) for epoch in range(length)]


def summarize(study: Any) -> dict[str, Any]:
    """Every trial (number, state, value, params, epochs; with folds each fold's value and
    their std) and the best finished one."""
    import optuna

    search = Study.model_validate(study.user_attrs["study"])
    trials = []
    for t in study.get_trials(deepcopy=False):
        curve = [t.intermediate_values[s] for s in sorted(t.intermediate_values)]
        trials.append(
            {
                "trial": t.number,
                "state": "SKIPPED" if SKIPPED_ATTR in t.user_attrs else t.state.name,
                "value": t.value
                if t.value is not None
                else (_best(curve, search) if curve else None),
                "params": dict(t.params),
                "epochs": len(curve),
                "pruned_at_epoch": t.user_attrs.get("pruned_at_epoch"),
                "model_uri": t.user_attrs.get("model_uri", ""),
                "fold_values": t.user_attrs.get("fold_values"),
                "std": t.user_attrs.get("value_std"),
            }
        )
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    best = None
    if complete:
        winner = study.best_trial
        others = sorted(
            (t for t in complete if t.number != winner.number),
            key=lambda t: t.value,
            reverse=search.direction == "maximize",
        )
        best = {
            "trial": winner.number,
            "value": winner.value,
            "std": winner.user_attrs.get("value_std"),
            "runner_up": others[0].value if others else None,
            "lead_se": lead_se(winner, others[0]) if others else None,
            "params": dict(winner.params),
            "history": winner.user_attrs.get("history", {}),
            "model_uri": winner.user_attrs.get("model_uri", ""),
        }
    skipped = [t for t in study.get_trials(deepcopy=False) if SKIPPED_ATTR in t.user_attrs]
    return {
        "study": study.study_name,
        "metric": search.metric,
        "direction": search.direction,
        "algorithm": search.algorithm,
        "folds": search.folds,
        "space": {p: d.to_yaml() for p, d in search.space.items()},
        "trials": trials,
        "best": best,
        "max_minutes": search.max_minutes,
        "spent_minutes": round(spent_minutes(study), 2),
        "budget": skipped[0].user_attrs[SKIPPED_ATTR] if skipped else None,
    }


def lead_se(winner: Any, runner_up: Any) -> float | None:
    """With folds, the standard error of the winner's lead over the runner-up from their
    paired fold differences (both trials ran on the same folds); None without folds."""
    ours, theirs = winner.user_attrs.get("fold_values"), runner_up.user_attrs.get("fold_values")
    if not ours or not theirs or len(ours) != len(theirs) or len(ours) < 2:
        return None
    differences = [a - b for a, b in zip(ours, theirs, strict=True)]
    return statistics.stdev(differences) / math.sqrt(len(differences))


def _best(curve: list[float], search: Study) -> float:
    return max(curve) if search.direction == "maximize" else min(curve)


def winner_candidates(
    summary: dict[str, Any],
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
    best = summary["best"]
    if best is None:
        raise ValueError(
            f"study {summary['study']}: no trial finished (every trial was stopped early or "
            "left out by search.max_minutes); raise search.trials or search.max_minutes, or "
            "drop search.early_stop"
        )
    examples = examples or {}
    folds = int(summary.get("folds", 1))
    outcome = SearchOutcome(
        study=summary["study"],
        metric=summary["metric"],
        trials=len(summary["trials"]),
        best_trial=best["trial"],
        value=best["value"],
        params=best["params"],
        runner_up=best.get("runner_up"),
        validation_examples=ranked_examples(examples, folds) if examples else None,
        train_examples=examples.get("train"),
        test_examples=examples.get("test"),
        folds=folds,
        value_std=best.get("std"),
        lead_se=best.get("lead_se"),
        budget=summary.get("budget"),
    )
    tuned = ModelSpec.model_validate(apply_overrides(base, best["params"]))
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
