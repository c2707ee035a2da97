"""One task of a local run as the console, the results folder and the summary see it: its step,
candidate x seed (or search trial and fold), status, cache state, times, log and outputs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.common.names import task_slug


@dataclass
class TaskRecord:
    """One task of the run (a candidate x seed iteration counts once per task)."""

    name: str  # kfp's task name, e.g. `train`
    step: str  # what the console calls it, e.g. `train`, `best model`
    number: int
    run_dir: Path
    candidate: str | None = None
    seed: int | None = None
    trial: int | None = None  # a search trial: Optuna's trial number (from 0)
    trials: int | None = None  # ... of this many in the candidate's search
    fold: int | None = None  # a search trial's fold (search.folds), from 0
    folds: int | None = None  # ... of this many
    status: str = "RUNNING"  # RUNNING, SUCCESS, FAILURE, STOPPED (ended by a stop of the run)
    cached: bool = False
    # The task failed and the run goes on without its candidate x seed (compare.on_failure:
    # continue): the compare step still runs on the others.
    goes_on: bool = False
    earlier_seconds: float | None = None  # cached: the time it took in the run that ran it
    resumed_from: int = 0  # epochs a training found done in its checkpoints (0: a first start)
    inputs: str = (
        ""  # a digest of the task's inputs: a cached task's are those of the run that ran it
    )
    started: float = field(default_factory=time.time)
    finished: float = 0.0
    log: Path | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    figure: str = ""
    epochs: int = 0
    steps: int = 0
    epoch_lines: int = 0

    @property
    def label(self) -> str:
        if self.candidate is None:
            return self.step
        if self.trial is not None:
            of = f"/{self.trials}" if self.trials is not None else ""
            fold = f" fold {self.fold + 1}/{self.folds}" if self.fold is not None else ""
            return f"{self.step} {self.candidate} trial {self.trial + 1}{of}{fold}"
        return f"{self.step} {self.candidate}" + (
            f" seed {self.seed}" if self.seed is not None else ""
        )

    @property
    def slug(self) -> str:
        return task_slug(self.step, self.candidate, self.seed, self.trial, self.fold)

    @property
    def seconds(self) -> float:
        return max(self.finished - self.started, 0.0) if self.finished else 0.0

    @property
    def ran_seconds(self) -> float | None:
        """The task's real time: for a cached task, the time of the run that ran it (None when
        that is not known)."""
        if self.cached:
            return self.earlier_seconds
        return self.seconds
