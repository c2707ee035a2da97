"""The vocabulary of a hyperparameter search: a candidate's `search:` section (distributions over
dotted paths into the candidate), the study settings, and what a trial or a winner carries.

Ground floor beside the rest of `components.spec`; `components.spec` re-exports every name, and
checks a space against the candidate's own fields (`check_search_space`).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from components.spec.base import Strict

# The validation metric a search optimises -> its direction.
SEARCH_METRICS: dict[str, Literal["maximize", "minimize"]] = {
    "val_accuracy": "maximize",
    "val_loss": "minimize",
}
SEARCH_ALGORITHMS = ("tpe", "random", "grid")
DISTRIBUTIONS = ("log_uniform", "uniform", "int", "choice")
# early_stop: median. Noisy validation curves cross the median often: a trial may stop only
# after a warm-up (this share of its epochs, at least this many) and this many epochs without
# improving (Optuna's PatientPruner around MedianPruner).
PRUNE_WARMUP_FRACTION = 0.25
PRUNE_WARMUP_EPOCHS = 2
PRUNE_PATIENCE = 2
# search.folds: at most this many folds (each one is a training of every trial).
MAX_FOLDS = 20
# Fields of a candidate that identify it rather than tune it.
UNSEARCHABLE = ("name", "framework", "search")


class Distribution(Strict):
    """One searched field: exactly one of `log_uniform: [low, high]`, `uniform: [low, high]`,
    `int: [low, high]` (both ends included) or `choice: [values]`."""

    log_uniform: tuple[float, float] | None = None
    uniform: tuple[float, float] | None = None
    int_range: tuple[int, int] | None = Field(default=None, alias="int")
    choice: list[Any] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Distribution:
        given = [kind for kind in DISTRIBUTIONS if self.bounds_or_choices(kind) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of {', '.join(DISTRIBUTIONS)} "
                f"(e.g. {{log_uniform: [1.0e-4, 1.0e-2]}} or {{choice: [32, 64]}}); "
                f"got {', '.join(given) or 'none'}"
            )
        if self.choice is not None:
            if not self.choice:
                raise ValueError("choice needs at least one value")
            if len({repr(v) for v in self.choice}) != len(self.choice):
                raise ValueError("choice values must be distinct")
            if any(isinstance(v, dict | list) for v in self.choice):
                raise ValueError("choice values must be numbers, strings or booleans")
            return self
        low, high = self.bounds_or_choices(self.kind)
        if not low < high:
            raise ValueError(f"{self.kind}: the low end {low} must be below the high end {high}")
        if self.log_uniform is not None and low <= 0:
            raise ValueError(f"log_uniform needs a positive low end (got {low}); use uniform")
        return self

    def bounds_or_choices(self, kind: str) -> Any:
        return {
            "log_uniform": self.log_uniform,
            "uniform": self.uniform,
            "int": self.int_range,
            "choice": self.choice,
        }[kind]

    @property
    def kind(self) -> str:
        return next(k for k in DISTRIBUTIONS if self.bounds_or_choices(k) is not None)

    def probes(self) -> list[Any]:
        """The values whose acceptance by the field proves the whole range valid."""
        values = self.bounds_or_choices(self.kind)
        return list(values)

    def to_yaml(self) -> dict[str, Any]:
        return {self.kind: list(self.bounds_or_choices(self.kind))}


class Study(Strict):
    """How a search samples and ranks trials: everything of `search:` except the trial count,
    so a rerun with more trials continues the same study."""

    parallel_trials: int = Field(default=1, ge=1, le=64, description="trials of one round")
    metric: Literal["val_accuracy", "val_loss"] = Field(
        default="val_accuracy",
        description="on the validation split, best epoch of each trial; accuracy is maximised, "
        "loss minimised",
    )
    algorithm: Literal["tpe", "random", "grid"] = Field(
        default="tpe", description="grid: every combination of the `choice` parameters"
    )
    early_stop: Literal["median"] | None = Field(
        default=None,
        description="stop a trial whose best value so far is below the median of the "
        f"finished trials' curves at the same epoch and has not improved for {PRUNE_PATIENCE} "
        f"epochs, never in its first {PRUNE_WARMUP_FRACTION:.0%} of epochs (at least "
        f"{PRUNE_WARMUP_EPOCHS}): Optuna's MedianPruner inside its PatientPruner; off by "
        "default, as on noisy curves a median stop ends trials that would have won",
    )
    max_minutes: float | None = Field(
        default=None,
        gt=0,
        le=60 * 24 * 30,
        description="wall-time budget of the study's rounds (ask to tell); once spent, no "
        "new round trains and the summary says why; none: only `trials` bounds the search",
    )
    folds: int = Field(
        default=1,
        description="1: a trial trains on the train split and is ranked on the validation "
        "split; K >= 2: it trains K times, fold k on train + validation without the images of "
        "fold k and ranked on those (components/common/folds.py), its value the mean over the "
        "folds: every image of train + validation ranks the trials, at K times the cost",
    )
    space: dict[str, Distribution] = Field(
        min_length=1, description="dotted path into the candidate -> distribution"
    )

    @field_validator("space", mode="before")
    @classmethod
    def _dotted_keys(cls, value: Any) -> Any:
        # `--set models.0.search.space.augment.zoom=...` splits the path at its dots: nested
        # mappings down to a distribution are the same dotted key.
        return flatten_space(value) if isinstance(value, dict) else value

    @field_validator("folds")
    @classmethod
    def _fold_count(cls, folds: int) -> int:
        if not 1 <= folds <= MAX_FOLDS:
            raise ValueError(
                f"folds is {folds}; use 1 (trials ranked on the validation split) or 2 to "
                f"{MAX_FOLDS} (K-fold over train + validation: each trial trains K times; 5 is "
                "the usual choice)"
            )
        return folds

    @model_validator(mode="after")
    def _grid_of_choices(self) -> Study:
        if self.algorithm == "grid":
            ranges = sorted(p for p, d in self.space.items() if d.choice is None)
            if ranges:
                raise ValueError(
                    f"algorithm grid searches `choice` parameters only; {', '.join(ranges)} "
                    "are ranges: list their values with choice, or use algorithm tpe or random"
                )
        return self

    @property
    def direction(self) -> Literal["maximize", "minimize"]:
        return SEARCH_METRICS[self.metric]

    @property
    def grid_size(self) -> int:
        return math.prod(len(d.choice or ()) for d in self.space.values())


class Search(Study):
    """A hyperparameter search around the candidate's recipe (the `search:` section)."""

    trials: int = Field(ge=1, le=1000, description="trials in total")

    @model_validator(mode="after")
    def _consistent(self) -> Search:
        if self.parallel_trials > self.trials:
            raise ValueError(
                f"parallel_trials ({self.parallel_trials}) exceeds trials ({self.trials}); "
                "lower parallel_trials or raise trials"
            )
        if self.algorithm == "grid" and self.trials > self.grid_size:
            raise ValueError(
                f"the grid has {self.grid_size} combinations and trials is {self.trials}; "
                f"set trials: {self.grid_size}"
            )
        return self

    def study(self) -> Study:
        return Study.model_validate(self.model_dump(exclude={"trials"}, by_alias=True))

    def rounds(self) -> list[int]:
        """Trials per round: `parallel_trials` each, the last round takes the rest."""
        full, rest = divmod(self.trials, self.parallel_trials)
        return [self.parallel_trials] * full + ([rest] if rest else [])


def flatten_space(space: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{a: {b: {uniform: ...}}} -> {"a.b": {uniform: ...}}; a distribution ends the path."""
    flat: dict[str, Any] = {}
    for key, value in space.items():
        path = f"{prefix}{key}"
        nested = (
            isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values())
        )
        if nested and not set(value) & {*DISTRIBUTIONS, "int_range"}:
            flat.update(flatten_space(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def set_path(tree: dict[str, Any], path: str, value: Any) -> None:
    """Set `a.b.c` in a nested mapping, creating the missing mappings on the way."""
    *parents, last = path.split(".")
    node = tree
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = value


def apply_overrides(model_spec: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of a candidate (as a mapping) with `overrides` ({dotted path: value}) set."""
    result = copy.deepcopy(model_spec)
    for path, value in overrides.items():
        set_path(result, path, value)
    return result


def path_problem(model: type[BaseModel], path: str) -> str | None:
    """Why `path` does not name a field of `model` (None when it does)."""
    parts = path.split(".")
    if parts[0] in UNSEARCHABLE:
        return f"'{parts[0]}' names the candidate and cannot be searched"
    here: Any = model
    for depth, part in enumerate(parts):
        prefix = ".".join(parts[: depth + 1])
        if here is dict:  # a free mapping (params): one key below it
            if depth != len(parts) - 1:
                return f"'{prefix}' goes deeper than a key of a mapping"
            return None
        fields = here.model_fields
        if part not in fields:
            known = ", ".join(f for f in fields if f not in UNSEARCHABLE)
            where = ".".join(parts[:depth]) or "the candidate"
            return f"'{prefix}' is not a field; fields of {where}: {known}"
        annotation = fields[part].annotation
        origin = getattr(annotation, "__origin__", None)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            here = annotation
        elif annotation is dict or origin is dict:
            here = dict
        elif depth != len(parts) - 1:
            return f"'{prefix}' is a single value; nothing lies below it"
        else:
            here = None
    if isinstance(here, type) and issubclass(here, BaseModel):
        return f"'{path}' is a section; name one of its fields (e.g. {path}.{next(iter(here.model_fields))})"
    if here is dict:
        return f"'{path}' is a mapping; name one of its keys (e.g. {path}.dropout)"
    return None


class Fold(Strict):
    """One fold of a search trial's K-fold ranking: the trial trains on train + validation
    without the images of fold `index` and validates on those (components/common/folds.py)."""

    index: int = Field(ge=0)
    count: int = Field(ge=2, le=MAX_FOLDS)

    @model_validator(mode="after")
    def _index_below_count(self) -> Fold:
        if self.index >= self.count:
            raise ValueError(f"fold index {self.index} is not below the fold count {self.count}")
        return self


class Pruning(Strict):
    """`early_stop: median` of one trial: Optuna's MedianPruner over the finished trials."""

    monitor: Literal["val_accuracy", "val_loss"]
    direction: Literal["maximize", "minimize"]
    finished_curves: list[list[float]] = Field(
        default_factory=list, description="per-epoch monitor values of every finished trial"
    )
    startup_trials: int = Field(ge=0, description="finished trials needed before any stop")
    warmup_epochs: int = Field(ge=0, description="epochs that always run")
    patience: int = Field(
        default=0, ge=0, description="epochs below the median without improving before a stop"
    )


class SearchOutcome(Strict):
    """What a search found: recorded in the model card of every retrain of the winner, and of
    the candidate's own (untuned) recipe retrained beside it to measure the search's gain."""

    study: str
    metric: Literal["val_accuracy", "val_loss"]
    trials: int = Field(ge=1)
    best_trial: int = Field(ge=0)
    value: float
    params: dict[str, Any]
    untuned: bool = Field(
        default=False, description="this training is the candidate's recipe before the search"
    )
    runner_up: float | None = Field(
        default=None, description="the second-best finished trial's value"
    )
    validation_examples: int | None = Field(
        default=None,
        ge=0,
        description="images the trials were ranked on (with folds: train + "
        "validation, each image in one fold)",
    )
    train_examples: int | None = Field(default=None, ge=0)
    folds: int = Field(default=1, ge=1, description="search.folds the trials were ranked with")
    value_std: float | None = Field(
        default=None, ge=0, description="the best trial's spread over its folds (with folds)"
    )
    lead_se: float | None = Field(
        default=None,
        ge=0,
        description="with folds: the standard error of the lead over the runner-up, from the "
        "two trials' paired fold differences",
    )
    test_examples: int | None = Field(default=None, ge=0)
    budget: str | None = Field(
        default=None, description="why rounds were left out (search.max_minutes spent)"
    )
