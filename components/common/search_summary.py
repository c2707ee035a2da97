"""The search's summary of one study: every trial so far and the best one. The tell step reports
on it, retrains its winner, and writes its JSON beside the study's journal (`summary.json`).

Ground floor: imports `components.common.results` and nothing else of ours.
"""

from __future__ import annotations

from typing import Any, Literal

from components.common.results import Result


class TrialSummary(Result):
    """One trial of the study: its state, value (with folds: the mean over them) and params."""

    trial: int  # Optuna's trial number, counted from 0
    state: str  # COMPLETE, PRUNED, FAIL, RUNNING, or SKIPPED (left out by search.max_minutes)
    value: float | None  # a stopped trial's best value before the stop; None with no curve
    params: dict[str, Any]
    epochs: int
    pruned_at_epoch: int | None = None
    model_uri: str = ""
    fold_values: list[float] | None = None  # with folds: each fold's value
    std: float | None = None  # with folds: the spread of fold_values


class BestTrial(Result):
    """The best finished trial, the runner-up's value and the winner's curves."""

    trial: int
    value: float
    std: float | None = None  # with folds: the spread over its folds
    runner_up: float | None = None  # the second-best finished trial's value
    lead_se: float | None = None  # with folds: the standard error of the lead over the runner-up
    params: dict[str, Any]
    history: dict[str, list[float]] = {}
    model_uri: str = ""


class SearchSummary(Result):
    """Every trial of a study so far and its best finished one (None until one finished)."""

    study: str
    metric: Literal["val_accuracy", "val_loss"]
    direction: Literal["maximize", "minimize"]
    algorithm: str
    folds: int = 1
    space: dict[str, dict[str, Any]]  # parameter -> {distribution: bounds or choices}
    trials: list[TrialSummary]
    best: BestTrial | None
    max_minutes: float | None = None
    spent_minutes: float = 0.0
    budget: str | None = None  # why rounds were left out (search.max_minutes spent)
