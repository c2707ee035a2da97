"""The Optuna study behind a search: suggest/tell rounds on a journal, pruning, the report."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from components.common.model_card import ModelCard
from components.search import study as st
from components.search.report import ranked, write_report
from components.spec import Candidate, ModelSpec, Pruning
from components.train.pruning import MedianStop

SPEC: dict[str, Any] = {
    "name": "cnn",
    "architecture": "small_cnn",
    "epochs": 4,
    "search": {
        "trials": 6,
        "parallel_trials": 2,
        "algorithm": "random",
        "space": {
            "optimizer.learning_rate": {"log_uniform": [1e-4, 1e-1]},
            "batch_size": {"choice": [16, 32, 64]},
            "params.dropout": {"uniform": [0.0, 0.5]},
        },
    },
}


def setup(**search: Any) -> tuple[dict[str, Any], Any]:
    spec = ModelSpec.model_validate({**SPEC, "search": {**SPEC["search"], **search}})
    assert spec.search is not None
    return st.base_spec(spec), spec.search.study()


def fake_trial(root: Path, candidate: dict[str, Any], pruned_at: int | None = None) -> Path:
    """A trial Model whose validation accuracy peaks for learning rates near 3e-3."""
    lr = candidate["model_spec"]["optimizer"]["learning_rate"]
    peak = 1 - abs(math.log10(lr) + 2.5) / 4
    epochs = 4 if pruned_at is None else pruned_at + 1
    history = {
        "val_accuracy": [peak * (e + 1) / 4 for e in range(epochs)],
        "val_loss": [1.0 / (e + 1) for e in range(epochs)],
    }
    folder = root / f"trial-{candidate['trial']}"
    ModelCard(
        framework="keras",
        name="cnn",
        seed=candidate["seed"],
        class_names=["a", "b"],
        input_size=(8, 8),
        channels=1,
        preprocessing="rescale_0_1",
        training={"trial": candidate["trial"], "pruned_at_epoch": pruned_at},
        history=history,
    ).save(folder)
    return folder


def run_rounds(root: Path, rounds: list[int], base: dict, config: Any, start: Path | None = None):
    journal = start
    asked: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    for index, count in enumerate(rounds):
        suggested = root / f"suggest-{index}"
        candidates = st.suggest(journal, suggested, base, config, 7, count)
        asked += candidates
        models = [(fake_trial(root, c), f"uri-{c['trial']}") for c in candidates]
        journal = root / f"tell-{index}"
        summary = st.tell(suggested, journal, base, config, models)
    return asked, summary, journal


def test_rounds_number_trials_in_order_and_pick_the_best_recorded_value(tmp_path):
    base, config = setup()
    asked, summary, _ = run_rounds(tmp_path, [2, 2, 2], base, config)
    assert [c["trial"] for c in asked] == list(range(6))
    for candidate in asked:
        Candidate.model_validate(candidate)  # a valid train task
        assert candidate["seed"] == 7
    recorded = {
        c["trial"]: max(ModelCard.load(tmp_path / f"trial-{c['trial']}").history["val_accuracy"])
        for c in asked
    }
    best_trial = max(recorded, key=lambda n: recorded[n])
    assert summary["best"]["trial"] == best_trial
    assert summary["best"]["value"] == pytest.approx(recorded[best_trial])
    assert summary["best"]["model_uri"] == f"uri-{best_trial}"
    assert [t["state"] for t in summary["trials"]] == ["COMPLETE"] * 6
    # each trial's recipe is the base with its own parameters
    trial = asked[3]
    spec = trial["model_spec"]
    params = summary["trials"][3]["params"]
    assert spec["optimizer"]["learning_rate"] == params["optimizer.learning_rate"]
    assert spec["batch_size"] == params["batch_size"]
    assert spec["params"]["dropout"] == params["params.dropout"]
    assert spec["epochs"] == 4 and "search" not in spec


def test_the_same_journal_suggests_the_same_trials_and_a_later_round_new_ones(tmp_path):
    base, config = setup()
    first = st.suggest(None, tmp_path / "a", base, config, 7, 2)
    again = st.suggest(None, tmp_path / "b", base, config, 7, 2)
    assert first == again  # a rerun or a retry asks for the same points
    models = [(fake_trial(tmp_path, c), "") for c in first]
    st.tell(tmp_path / "a", tmp_path / "told", base, config, models)
    later = st.suggest(tmp_path / "told", tmp_path / "c", base, config, 7, 2)
    assert [c["trial"] for c in later] == [2, 3]
    assert {c["model_spec"]["optimizer"]["learning_rate"] for c in later}.isdisjoint(
        {c["model_spec"]["optimizer"]["learning_rate"] for c in first}
    )


def test_continuing_from_a_journal_keeps_the_earlier_trials(tmp_path):
    base, config = setup()
    _, _, journal = run_rounds(tmp_path / "first", [2, 2], base, config)
    asked, summary, _ = run_rounds(tmp_path / "more", [2], base, config, start=journal)
    assert [c["trial"] for c in asked] == [4, 5]
    assert len(summary["trials"]) == 6


def test_grid_visits_every_combination_once(tmp_path):
    base, config = setup(
        algorithm="grid",
        trials=4,
        space={"batch_size": {"choice": [16, 32]}, "optimizer.name": {"choice": ["adam", "sgd"]}},
    )
    asked, _, _ = run_rounds(tmp_path, [2, 2], base, config)
    combos = {(c["model_spec"]["batch_size"], c["model_spec"]["optimizer"]["name"]) for c in asked}
    assert combos == {(16, "adam"), (16, "sgd"), (32, "adam"), (32, "sgd")}


def test_tpe_runs_after_the_first_round(tmp_path):
    base, config = setup(algorithm="tpe")
    asked, summary, _ = run_rounds(tmp_path, [2, 2, 2], base, config)
    assert len({c["model_spec"]["optimizer"]["learning_rate"] for c in asked}) == 6
    assert summary["algorithm"] == "tpe"


def test_median_early_stop_hands_trials_the_finished_curves_and_records_pruning(tmp_path):
    base, config = setup(early_stop="median")
    first = st.suggest(None, tmp_path / "s0", base, config, 7, 2)
    assert all(c["prune"]["finished_curves"] == [] for c in first)
    models = [(fake_trial(tmp_path, c), "") for c in first]
    st.tell(tmp_path / "s0", tmp_path / "t0", base, config, models)
    second = st.suggest(tmp_path / "t0", tmp_path / "s1", base, config, 7, 2)
    prune = Pruning.model_validate(second[0]["prune"])
    assert len(prune.finished_curves) == 2 and prune.startup_trials == 2
    assert prune.finished_curves[0] == ModelCard.load(models[0][0]).history["val_accuracy"]
    stopped = [
        (fake_trial(tmp_path, second[0], pruned_at=2), ""),
        (fake_trial(tmp_path, second[1]), ""),
    ]
    summary = st.tell(tmp_path / "s1", tmp_path / "t1", base, config, stopped)
    states = {t["trial"]: t["state"] for t in summary["trials"]}
    assert states == {0: "COMPLETE", 1: "COMPLETE", 2: "PRUNED", 3: "COMPLETE"}
    assert summary["trials"][2]["pruned_at_epoch"] == 2
    assert summary["best"]["trial"] != 2


def test_tell_refuses_a_model_that_is_not_a_trial_of_the_study(tmp_path):
    base, config = setup()
    first = st.suggest(None, tmp_path / "s0", base, config, 7, 1)
    stranger = fake_trial(tmp_path, {**first[0], "trial": 9})
    with pytest.raises(ValueError, match="is not a trial of study cnn"):
        st.tell(tmp_path / "s0", tmp_path / "t0", base, config, [(stranger, "")])


def test_a_trial_without_validation_curve_is_a_clear_error(tmp_path):
    base, config = setup()
    first = st.suggest(None, tmp_path / "s0", base, config, 7, 1)
    folder = fake_trial(tmp_path, first[0])
    card = ModelCard.load(folder)
    card.history = {"loss": [1.0]}
    card.save(folder)
    with pytest.raises(ValueError, match="needs a validation split"):
        st.tell(tmp_path / "s0", tmp_path / "t0", base, config, [(folder, "")])


def test_winner_candidates_carry_the_best_recipe_and_the_outcome_per_seed(tmp_path):
    base, config = setup()
    _, summary, _ = run_rounds(tmp_path, [2, 2], base, config)
    winners = st.winner_candidates(summary, base, [0, 1, 2])
    assert [w["seed"] for w in winners] == [0, 1, 2]
    best = summary["best"]
    for winner in winners:
        candidate = Candidate.model_validate(winner)
        assert candidate.searched is not None and candidate.trial is None
        assert candidate.searched.best_trial == best["trial"]
        assert candidate.searched.params == best["params"]
        assert candidate.model_spec.batch_size == best["params"]["batch_size"]


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


def test_report_ranks_trials_and_draws_each_parameter(tmp_path):
    base, config = setup(early_stop="median")
    _, summary, _ = run_rounds(tmp_path, [2, 2], base, config)
    order = [t["value"] for t in ranked(summary)]
    assert order == sorted(order, reverse=True)
    path = write_report(summary, tmp_path / "report.html")
    text = path.read_text()
    assert f"Best: trial {summary['best']['trial'] + 1}" in text
    assert text.count("<img") == 2  # the scatter plots and the best trial's curves
    for param in summary["space"]:
        assert param in text


def test_a_keras_trial_below_the_median_stops_and_its_card_says_when(tmp_path, image_dataset):
    from components.train.run import train

    dataset = image_dataset(
        tmp_path, {"dark": 40, "bright": 210}, 30, (16, 16), validation=0.2, test=0.2
    )
    spec = ModelSpec(
        name="tiny", architecture="small_cnn", epochs=6, batch_size=8, params={"filters": 4}
    )
    # Finished trials that were perfect from the first epoch: any real curve is below them.
    prune = Pruning(
        monitor="val_loss",
        direction="minimize",
        finished_curves=[[0.0] * 6, [0.0] * 6],
        startup_trials=2,
        warmup_epochs=2,
    )
    card = train(
        dataset, spec, 0, tmp_path / "model", tmp_path / "curves.html", trial=3, prune=prune
    )
    assert card.training["pruned_at_epoch"] == 2  # the first epoch past the warm-up
    assert len(card.history["val_loss"]) == 3
    assert card.training["trial"] == 3
    assert "trial 3" in (tmp_path / "curves.html").read_text()
    free = train(dataset, spec, 0, tmp_path / "free", tmp_path / "free.html", trial=4)
    assert free.training["pruned_at_epoch"] is None
    assert len(free.history["val_loss"]) == 6
