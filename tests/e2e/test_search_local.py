"""A search of 4 trials on digits through kfp.local, and a rerun with more trials that continues it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from components.spec import SearchOutcome
from pipelines.config import load_experiment
from pipelines.summary import format_result
from pipelines.targets.base import RunOptions
from pipelines.targets.local import LocalTarget

pytestmark = pytest.mark.e2e

SEARCH = (
    "models.0.search={trials: TRIALS, parallel_trials: 2, algorithm: random, space: "
    "{optimizer.learning_rate: {log_uniform: [3.0e-4, 3.0e-2]}, batch_size: {choice: [16, 64]}}}"
)


def target(runs_dir: Path, trials: int) -> LocalTarget:
    experiment = load_experiment(
        "digits",
        [
            "models.0.epochs=3",
            "models.0.early_stopping_patience=null",
            "seeds=[0, 1]",
            "gate.min=0.0",
            SEARCH.replace("TRIALS", str(trials)),
        ],
    )
    return LocalTarget(experiment, RunOptions(runs_dir=runs_dir))


def run(runs_dir: Path, trials: int) -> dict[str, Any]:
    return target(runs_dir, trials).run()


def cards(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(run_dir.rglob("model_card.json"))]


def study(run_dir: Path) -> Any:
    """The journal of the run's last tell step (the one that holds the most trials)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    studies = [
        optuna.load_study(
            study_name="small-cnn",
            storage=optuna.storages.JournalStorage(JournalFileBackend(str(journal))),
        )
        for journal in run_dir.rglob("study/journal.log")
    ]
    return max(studies, key=lambda s: len(s.trials))


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def first(runs_dir: Path) -> dict[str, Any]:
    return run(runs_dir, trials=4)


@pytest.fixture(scope="module")
def rerun(runs_dir: Path, first: dict[str, Any]) -> dict[str, Any]:
    return run(runs_dir, trials=6)


def test_four_trials_train_four_models_and_the_best_is_retrained_per_seed(first):
    assert first["status"] == "SUCCEEDED", first["error"]
    run_dir = Path(first["run_dir"])
    trials = {
        c["training"]["trial"]: c for c in cards(run_dir) if c["training"].get("trial") is not None
    }
    assert sorted(trials) == [0, 1, 2, 3]
    assert {c["seed"] for c in trials.values()} == {0}  # the search runs on the first seed
    recorded = {n: max(c["history"]["val_accuracy"]) for n, c in trials.items()}
    best_trial = max(sorted(recorded), key=lambda n: recorded[n])
    searched = [c for c in cards(run_dir) if c["training"].get("search")]
    winners = [c for c in searched if not c["training"]["search"]["untuned"]]
    assert sorted(c["seed"] for c in winners) == [0, 1]
    # the untuned recipe is retrained on the same seeds, to measure the search's gain
    untuned = [c for c in searched if c["training"]["search"]["untuned"]]
    assert sorted(c["seed"] for c in untuned) == [0, 1]
    assert {c["name"] for c in untuned} == {"small-cnn-untuned"}
    assert all(c["training"]["spec"]["batch_size"] == 32 for c in untuned)
    for card in winners:
        outcome = card["training"]["search"]
        assert outcome["best_trial"] == best_trial
        assert outcome["value"] == pytest.approx(recorded[best_trial])
        assert outcome["trials"] == 4
        spec = card["training"]["spec"]
        assert spec["optimizer"]["learning_rate"] == outcome["params"]["optimizer.learning_rate"]
        assert spec["batch_size"] == outcome["params"]["batch_size"]
        assert (
            spec["optimizer"]["learning_rate"]
            == trials[best_trial]["training"]["spec"]["optimizer"]["learning_rate"]
        )


def test_the_winner_is_compared_gated_registered_and_its_parameters_recorded(first):
    summary = first["summary"]
    assert sorted(row["name"] for row in summary["rows"]) == ["small-cnn", "small-cnn-untuned"]
    assert all(row["seeds"] == 2 for row in summary["rows"])
    record = first["registration"]
    assert record is not None, "the winner was not registered"
    card = json.loads((Path(record["path"]) / "model_card.json").read_text())
    # the summary leaves out fields that are None (no budget): compare the outcomes as typed
    assert SearchOutcome.model_validate(card["training"]["search"]) == SearchOutcome.model_validate(
        summary["best"]["search"]
    )
    best = summary["best"]["search"]
    text = format_result(first)
    assert f"search small-cnn: best of 4 trials is trial {int(best['best_trial']) + 1} (" in text
    assert "optimizer.learning_rate=" in text
    # the gain over the untuned recipe, with its noise and a verdict on it
    gain = next(line for line in text.splitlines() if "gain over the untuned recipe" in line)
    assert " ± " in gain and "(2 seeds)" in gain and "test images" in gain
    assert "inside the noise" in gain or "beyond the noise" in gain
    assert "validation noise" in text


def test_every_trial_has_its_own_name_log_curves_and_outputs_and_the_counter_knows_them(
    runs_dir, first
):
    run_dir = Path(first["run_dir"])
    trials = [t for t in first["tasks"] if " trial " in t["label"]]
    assert sorted(t["label"] for t in trials) == [
        f"search small-cnn trial {n}/4" for n in range(1, 5)
    ]
    logs = {t["log"] for t in trials}
    assert len(logs) == 4 and all(Path(log).is_file() for log in logs)
    for n in range(1, 5):
        assert (run_dir / f"curves-small-cnn-trial{n}.html").is_file()
        # the link is the trial's loop iteration: its train task is `train`, `train-2`, ...
        assert list((run_dir / f"small-cnn-trial{n}").glob("train*/model/model_card.json"))
    # the winner's trainings keep their seed names
    assert (run_dir / "curves-small-cnn-seed0.html").is_file()
    assert (run_dir / "curves-small-cnn-seed1.html").is_file()
    # the step counter's total, known before the run starts, is the number of tasks that ran
    assert len(first["tasks"]) == target(runs_dir, trials=4).expected_tasks()


def test_the_search_report_ranks_the_trials(first):
    run_dir = Path(first["run_dir"])
    reports = [Path(p) for p in first["reports"] if "Trials, best first" in Path(p).read_text()]
    assert reports, first["reports"]
    last = max(reports, key=lambda p: p.read_text().count("<tr>"))
    assert "4 trials (4 finished" in last.read_text()
    assert study(run_dir).best_trial.number == first["summary"]["best"]["search"]["best_trial"]


def test_a_rerun_with_more_trials_continues_the_study_from_the_cache(first, rerun):
    assert rerun["status"] == "SUCCEEDED", rerun["error"]
    status = {t["name"]: t["status"] for t in rerun["tasks"]}  # one entry per task name
    # the first two rounds (suggest, two trials each) come from the cache
    for task in ("suggest", "train", "suggest-2", "train-2"):
        assert status[task] == "CACHED", status
    grown = study(Path(rerun["run_dir"]))
    assert [t.number for t in grown.trials] == list(range(6))
    old = study(Path(first["run_dir"]))
    assert [t.params for t in grown.trials[:4]] == [t.params for t in old.trials]
    new_cards = [c for c in cards(Path(rerun["run_dir"])) if c["training"].get("trial") is not None]
    assert sorted(c["training"]["trial"] for c in new_cards) == [4, 5]
    assert rerun["summary"]["best"]["search"]["trials"] == 6
