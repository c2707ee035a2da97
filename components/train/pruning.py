"""`early_stop: median` inside one trial: Optuna's MedianPruner against the finished trials.

The trials of a round run as separate tasks, so a trial cannot watch the others live; the suggest
step hands it the per-epoch curves of the trials finished in earlier rounds, and every epoch the
trial asks an in-memory study holding those curves whether MedianPruner would stop it.
"""

from __future__ import annotations

import warnings
from typing import Any

from components.spec import Pruning


class MedianStop:
    """`should_stop(epoch, value)` after every epoch; True once MedianPruner prunes the trial."""

    def __init__(self, prune: Pruning):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.prune = prune
        median = optuna.pruners.MedianPruner(
            n_startup_trials=prune.startup_trials, n_warmup_steps=prune.warmup_epochs
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # A trial still improving is kept however it compares with the median.
            pruner = (
                optuna.pruners.PatientPruner(median, patience=prune.patience)
                if prune.patience
                else median
            )
        self.study = optuna.create_study(direction=prune.direction, pruner=pruner)
        pick = max if prune.direction == "maximize" else min
        self.study.add_trials(
            optuna.trial.create_trial(
                value=pick(curve),
                intermediate_values=dict(enumerate(curve)),
                state=optuna.trial.TrialState.COMPLETE,
            )
            for curve in prune.finished_curves
            if curve
        )
        self.trial: Any = self.study.ask()

    def should_stop(self, epoch: int, value: float) -> bool:
        self.trial.report(float(value), epoch)
        return bool(self.trial.should_prune())
