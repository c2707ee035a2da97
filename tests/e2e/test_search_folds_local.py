"""A 2-fold search of 2 trials on digits through kfp.local: each trial trains once per fold, is
ranked on the mean over its folds, and the winner retrains on the train split."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from pipelines.config import load_experiment
from pipelines.summary import format_result
from pipelines.targets.base import RunOptions
from pipelines.targets.local import LocalTarget

pytestmark = pytest.mark.e2e

SEARCH = (
    "models.0.search={trials: 2, parallel_trials: 2, algorithm: random, folds: 2, space: "
    "{optimizer.learning_rate: {log_uniform: [3.0e-4, 3.0e-2]}}}"
)


def target(runs_dir: Path) -> LocalTarget:
    experiment = load_experiment(
        "digits",
        ["models.0.epochs=2", "models.0.early_stopping_patience=null", "gate.min=0.0", SEARCH],
    )
    return LocalTarget(experiment, RunOptions(runs_dir=runs_dir))


def cards(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(run_dir.rglob("model_card.json"))]


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def result(runs_dir: Path) -> dict[str, Any]:
    return target(runs_dir).run()


def test_each_trial_trains_once_per_fold_and_the_winner_is_ranked_on_their_mean(result):
    assert result["status"] == "SUCCEEDED", result["error"]
    run_dir = Path(result["run_dir"])
    folds = [c for c in cards(run_dir) if c["training"].get("trial") is not None]
    assert sorted((c["training"]["trial"], c["training"]["fold"]["index"]) for c in folds) == [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
    ]
    best = result["summary"]["best"]["search"]
    pool = best["validation_examples"]  # with folds: train + validation
    for trial in (0, 1):
        mine = [c for c in folds if c["training"]["trial"] == trial]
        # a fold trains on the rest of train + validation; the two folds' images make it up
        assert all(
            c["training"]["train_examples"] + c["training"]["validation_examples"] == pool
            for c in mine
        )
        assert sum(c["training"]["validation_examples"] for c in mine) == pool
    values = {
        trial: [max(c["history"]["val_accuracy"]) for c in folds if c["training"]["trial"] == trial]
        for trial in (0, 1)
    }
    means = {trial: statistics.fmean(v) for trial, v in values.items()}
    winner = max(sorted(means), key=lambda t: means[t])
    assert best["best_trial"] == winner and best["folds"] == 2
    assert best["value"] == pytest.approx(means[winner])
    assert best["value_std"] == pytest.approx(statistics.stdev(values[winner]))
    # the winner and the untuned recipe retrain as any candidate: on the train split
    searched = [c for c in cards(run_dir) if c["training"].get("search")]
    assert {c["name"] for c in searched} == {"small-cnn", "small-cnn-untuned"}
    for card in searched:
        training = card["training"]
        assert training["fold"] is None
        assert training["train_examples"] + training["validation_examples"] == pool
        assert training["validation_examples"] < pool // 4  # the 10% validation split, not a fold
    text = format_result(result)
    assert f"± {best['value_std']:.4f} over 2 folds)" in text


def test_every_fold_has_its_own_name_log_and_curves_and_the_counter_knows_them(runs_dir, result):
    run_dir = Path(result["run_dir"])
    trials = [t for t in result["tasks"] if " trial " in t["label"]]
    assert sorted(t["label"] for t in trials) == [
        f"search small-cnn trial {n}/2 fold {k}/2" for n in (1, 2) for k in (1, 2)
    ]
    assert len({t["log"] for t in trials}) == 4
    for n in (1, 2):
        for k in (1, 2):
            assert (run_dir / f"curves-small-cnn-trial{n}-fold{k}.html").is_file()
            assert list((run_dir / f"small-cnn-trial{n}-fold{k}").glob("train*/model"))
    assert len(result["tasks"]) == target(runs_dir).expected_tasks()
    reports = [Path(p).read_text() for p in result["reports"]]
    search = next(text for text in reports if "Trials, best first" in text)
    assert "val_accuracy (mean ± std, 2 folds)" in search
    assert "2 folds of train + validation" in search
