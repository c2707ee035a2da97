"""A search trial's median early stop (components/train/pruning.py): Optuna's MedianPruner in a
PatientPruner, against the curves of the finished trials."""

from __future__ import annotations

import pytest

from components.spec import Pruning
from components.train.pruning import MedianStop


@pytest.mark.parametrize(
    ("curve", "stops"),
    [
        ([0.30, 0.35, 0.40, 0.45], [False, False, True, True]),  # below the median from epoch 3
        ([0.50, 0.70, 0.80, 0.90], [False, False, False, False]),  # above it throughout
    ],
)
def test_median_stop_follows_optunas_median_pruner(curve, stops):
    prune = Pruning(
        monitor="val_accuracy",
        direction="maximize",
        finished_curves=[[0.5, 0.6, 0.7, 0.8], [0.5, 0.62, 0.72, 0.82]],
        startup_trials=2,
        warmup_epochs=2,
    )
    stopper = MedianStop(prune)
    assert [stopper.should_stop(e, v) for e, v in enumerate(curve)] == stops


def test_a_patient_median_stop_keeps_a_trial_that_is_still_improving():
    finished = [[0.5, 0.6, 0.7, 0.8, 0.85, 0.9], [0.5, 0.62, 0.72, 0.82, 0.86, 0.9]]
    prune = Pruning(
        monitor="val_accuracy",
        direction="maximize",
        finished_curves=finished,
        startup_trials=2,
        warmup_epochs=2,
        patience=2,
    )
    # below the median throughout, but a new best every epoch: never stopped
    climbing = [0.30, 0.35, 0.40, 0.45, 0.50, 0.55]
    stopper = MedianStop(prune)
    assert not any(stopper.should_stop(e, v) for e, v in enumerate(climbing))
    # below the median and falling back: stopped once its best is two epochs old
    falling = [0.30, 0.35, 0.40, 0.39, 0.38, 0.38]
    stopper = MedianStop(prune)
    assert [stopper.should_stop(e, v) for e, v in enumerate(falling)] == [False] * 5 + [True]


def test_median_stop_waits_for_enough_finished_trials():
    prune = Pruning(
        monitor="val_loss",
        direction="minimize",
        finished_curves=[[0.5, 0.4, 0.3]],
        startup_trials=2,
        warmup_epochs=0,
    )
    stopper = MedianStop(prune)
    assert not any(stopper.should_stop(e, 9.0) for e in range(3))
