"""The round's trial Models read back: each trial's value and curve (with folds, the mean over its
folds), and the study's summary of every trial so far.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.common.model_card import ModelCard
from components.common.search_summary import BestTrial, SearchSummary, TrialSummary
from components.search.journal import SKIPPED_ATTR, spent_minutes
from components.spec import Study


def trial_value(card: ModelCard, metric: str, direction: str) -> tuple[list[float], float]:
    """The trial's per-epoch `metric` and its best epoch's value (the objective)."""
    curve = [float(v) for v in card.history.get(metric, [])]
    if not curve:
        raise ValueError(
            f"trial model {card.name} has no {metric} in its history: a search needs a "
            "validation split (data.splits.validation above 0)"
        )
    return curve, (max(curve) if direction == "maximize" else min(curve))


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


def summarize(study: Any) -> SearchSummary:
    """Every trial (number, state, value, params, epochs; with folds each fold's value and
    their std) and the best finished one."""
    import optuna

    search = Study.model_validate(study.user_attrs["study"])
    trials = []
    for t in study.get_trials(deepcopy=False):
        curve = [t.intermediate_values[s] for s in sorted(t.intermediate_values)]
        trials.append(
            TrialSummary(
                trial=t.number,
                state="SKIPPED" if SKIPPED_ATTR in t.user_attrs else t.state.name,
                value=t.value if t.value is not None else (_best(curve, search) if curve else None),
                params=dict(t.params),
                epochs=len(curve),
                pruned_at_epoch=t.user_attrs.get("pruned_at_epoch"),
                model_uri=t.user_attrs.get("model_uri", ""),
                fold_values=t.user_attrs.get("fold_values"),
                std=t.user_attrs.get("value_std"),
            )
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
        best = BestTrial(
            trial=winner.number,
            value=winner.value,
            std=winner.user_attrs.get("value_std"),
            runner_up=others[0].value if others else None,
            lead_se=lead_se(winner, others[0]) if others else None,
            params=dict(winner.params),
            history=winner.user_attrs.get("history", {}),
            model_uri=winner.user_attrs.get("model_uri", ""),
        )
    skipped = [t for t in study.get_trials(deepcopy=False) if SKIPPED_ATTR in t.user_attrs]
    return SearchSummary(
        study=study.study_name,
        metric=search.metric,
        direction=search.direction,
        algorithm=search.algorithm,
        folds=search.folds,
        space={p: d.to_yaml() for p, d in search.space.items()},
        trials=trials,
        best=best,
        max_minutes=search.max_minutes,
        spent_minutes=round(spent_minutes(study), 2),
        budget=skipped[0].user_attrs[SKIPPED_ATTR] if skipped else None,
    )


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
