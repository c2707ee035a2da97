"""The Optuna study behind a search: suggest/tell rounds on a journal, pruning, the report."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from components.common.model_card import ModelCard
from components.common.search_summary import SearchSummary
from components.search import study as st
from components.search.journal import base_spec
from components.search.report import ranked, write_report
from components.spec import Candidate, ModelSpec, Pruning

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
    return base_spec(spec), spec.search.study()


def told(
    journal_in: Path, journal_out: Path, base: dict, config: Any, models: list
) -> SearchSummary:
    """The tell step's summary, read as the typed model its JSON is."""
    return SearchSummary.model_validate(st.tell(journal_in, journal_out, base, config, models))


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
    trial_card(candidate, {"pruned_at_epoch": pruned_at}, history).save(folder)
    return folder


def trial_card(
    candidate: dict[str, Any], training: dict[str, Any], history: dict[str, list[float]]
) -> ModelCard:
    """The card of a trial Model of `candidate` with these `training` fields and `history`."""
    return ModelCard(
        framework="keras",
        name="cnn",
        seed=candidate["seed"],
        class_names=["a", "b"],
        input_size=(8, 8),
        channels=1,
        preprocessing="rescale_0_1",
        training={"trial": candidate["trial"], **training},
        history=history,
    )


def run_rounds(root: Path, rounds: list[int], base: dict, config: Any, start: Path | None = None):
    journal = start
    asked: list[dict[str, Any]] = []
    summary: SearchSummary | None = None
    for index, count in enumerate(rounds):
        suggested = root / f"suggest-{index}"
        candidates = st.suggest(journal, suggested, base, config, 7, count)
        asked += candidates
        models = [(fake_trial(root, c), f"uri-{c['trial']}") for c in candidates]
        journal = root / f"tell-{index}"
        summary = told(suggested, journal, base, config, models)
    assert summary is not None
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
    assert summary.best is not None
    assert summary.best.trial == best_trial
    assert summary.best.value == pytest.approx(recorded[best_trial])
    assert summary.best.model_uri == f"uri-{best_trial}"
    assert [t.state for t in summary.trials] == ["COMPLETE"] * 6
    # each trial's recipe is the base with its own parameters
    trial = asked[3]
    spec = trial["model_spec"]
    params = summary.trials[3].params
    assert spec["optimizer"]["learning_rate"] == params["optimizer.learning_rate"]
    assert spec["batch_size"] == params["batch_size"]
    assert spec["params"]["dropout"] == params["params.dropout"]
    assert spec["epochs"] == 4 and "search" not in spec


def test_the_summary_json_keeps_its_keys_and_reads_back_as_the_typed_summary(tmp_path):
    base, config = setup()
    first = st.suggest(None, tmp_path / "s0", base, config, 7, 2)
    models = [(fake_trial(tmp_path, c), f"uri-{c['trial']}") for c in first]
    written = json.loads(
        json.dumps(st.tell(tmp_path / "s0", tmp_path / "t0", base, config, models))
    )
    assert list(written) == [
        "study", "metric", "direction", "algorithm", "folds", "space", "trials", "best",
        "max_minutes", "spent_minutes", "budget",
    ]  # fmt: skip
    assert list(written["trials"][0]) == [
        "trial", "state", "value", "params", "epochs", "pruned_at_epoch", "model_uri",
        "fold_values", "std",
    ]  # fmt: skip
    assert list(written["best"]) == [
        "trial", "value", "std", "runner_up", "lead_se", "params", "history", "model_uri",
    ]  # fmt: skip
    summary = SearchSummary.model_validate(written)
    assert summary.model_dump(mode="json") == written
    assert summary.best is not None and summary.best.model_uri.startswith("uri-")


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
    assert len(summary.trials) == 6


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
    assert summary.algorithm == "tpe"


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
    summary = told(tmp_path / "s1", tmp_path / "t1", base, config, stopped)
    states = {t.trial: t.state for t in summary.trials}
    assert states == {0: "COMPLETE", 1: "COMPLETE", 2: "PRUNED", 3: "COMPLETE"}
    assert summary.trials[2].pruned_at_epoch == 2
    assert summary.best is not None and summary.best.trial != 2


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
    winners = st.winner_candidates(summary, base, [0, 1, 2], {"validation": 90, "test": 120})
    tuned = [Candidate.model_validate(w) for w in winners if not w["searched"]["untuned"]]
    untuned = [Candidate.model_validate(w) for w in winners if w["searched"]["untuned"]]
    assert [w.seed for w in tuned] == [0, 1, 2]
    best = summary.best
    assert best is not None and best.runner_up is not None
    for candidate in tuned:
        assert candidate.searched is not None and candidate.trial is None
        assert candidate.searched.best_trial == best.trial
        assert candidate.searched.params == best.params
        assert candidate.searched.runner_up == best.runner_up < best.value
        assert (candidate.searched.validation_examples, candidate.searched.test_examples) == (
            90,
            120,
        )
        assert candidate.model_spec.batch_size == best.params["batch_size"]
        assert candidate.model_spec.name == "cnn"
    # the candidate's own recipe beside it, on the same seeds, to measure the search's gain
    assert [w.seed for w in untuned] == [0, 1, 2]
    for candidate in untuned:
        assert candidate.model_spec.name == "cnn-untuned"
        assert candidate.model_spec.model_dump(exclude={"name"}) == ModelSpec.model_validate(
            base
        ).model_dump(exclude={"name"})


def test_a_search_that_keeps_the_recipe_retrains_no_untuned_copy(tmp_path):
    base, config = setup()
    _, summary, _ = run_rounds(tmp_path, [2], base, config)
    assert summary.best is not None
    best = summary.best.model_copy(update={"params": {"batch_size": base["batch_size"]}})
    kept = summary.model_copy(update={"best": best})
    winners = st.winner_candidates(kept, base, [0, 1])
    assert [w["model_spec"]["name"] for w in winners] == ["cnn", "cnn"]


def test_no_round_trains_once_the_time_budget_is_spent(tmp_path, image_dataset):
    from components.train.run import train

    dataset = image_dataset(tmp_path, {"dark": 40, "bright": 210}, 6, (8, 8), validation=0.2)
    # Any round takes longer than a nanosecond: the budget is spent after the first.
    base, config = setup(max_minutes=1e-9)
    first = st.suggest(None, tmp_path / "s0", base, config, 7, 2)
    assert all("skip" not in c for c in first)
    models = [(fake_trial(tmp_path, c), "") for c in first]
    st.tell(tmp_path / "s0", tmp_path / "t0", base, config, models)
    second = st.suggest(tmp_path / "t0", tmp_path / "s1", base, config, 7, 2)
    assert [c["trial"] for c in second] == [2, 3]
    assert all(
        "max_minutes" in c["skip"] and "round 2 was not trained" in c["skip"] for c in second
    )
    # the decision is the journal's: a retried or cached suggest makes the same one
    assert st.suggest(tmp_path / "t0", tmp_path / "s1b", base, config, 7, 2) == second
    skipped = []
    for candidate in second:
        task = Candidate.model_validate(candidate)
        folder = tmp_path / f"skipped-{task.trial}"
        card = train(
            dataset,
            task.model_spec,
            task.seed,
            folder,
            tmp_path / f"curves-{task.trial}.html",
            trial=task.trial,
            skip=task.skip,
        )
        assert card.history == {} and card.training["skipped"] == task.skip
        assert "not trained" in (tmp_path / f"curves-{task.trial}.html").read_text()
        skipped.append((folder, ""))
    summary = told(tmp_path / "s1", tmp_path / "t1", base, config, skipped)
    states = [t.state for t in summary.trials]
    assert states == ["COMPLETE", "COMPLETE", "SKIPPED", "SKIPPED"]
    assert summary.best is not None and summary.best.trial in (0, 1)
    assert summary.max_minutes == 1e-9 and summary.spent_minutes >= 0
    assert summary.budget is not None and "round 2 was not trained" in summary.budget
    winner = Candidate.model_validate(st.winner_candidates(summary, base, [0])[0])
    assert winner.searched is not None and winner.searched.budget == summary.budget
    text = write_report(summary, tmp_path / "report.html").read_text()
    assert "skipped" in text


def test_without_a_budget_every_round_trains(tmp_path):
    base, config = setup()
    asked, summary, _ = run_rounds(tmp_path, [2, 2, 2], base, config)
    assert all("skip" not in c for c in asked) and summary.budget is None


def test_early_stop_warms_up_for_a_quarter_of_the_epochs(tmp_path):
    base, config = setup(early_stop="median")
    long = {**base, "epochs": 40}
    candidate = st.suggest(None, tmp_path / "s", long, config, 7, 1)[0]
    assert candidate["prune"]["warmup_epochs"] == 10 and candidate["prune"]["patience"] == 2


def test_report_ranks_trials_and_draws_each_parameter(tmp_path):
    base, config = setup(early_stop="median")
    _, summary, _ = run_rounds(tmp_path, [2, 2], base, config)
    order = [t.value for t in ranked(summary)]
    assert order == sorted(order, reverse=True)
    path = write_report(summary, tmp_path / "report.html")
    text = path.read_text()
    assert summary.best is not None
    assert f"Best: trial {summary.best.trial + 1}" in text
    assert text.count("<img") == 2  # the scatter plots and the best trial's curves
    for param in summary.space:
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
    assert "trial 4" in (tmp_path / "curves.html").read_text()  # counted from 1
    free = train(dataset, spec, 0, tmp_path / "free", tmp_path / "free.html", trial=4)
    assert free.training["pruned_at_epoch"] is None
    assert len(free.history["val_loss"]) == 6


def fold_model(root: Path, candidate: dict[str, Any], best: float) -> tuple[Path, str]:
    """One fold's Model of a trial whose validation accuracy peaks at `best`."""
    fold = candidate["fold"]
    folder = root / f"trial-{candidate['trial']}-fold-{fold['index']}"
    history = {"val_accuracy": [best - 0.1, best, best - 0.05], "loss": [1.0, 0.5, 0.4]}
    trial_card(candidate, {"fold": fold}, history).save(folder)
    return folder, f"uri-{candidate['trial']}-{fold['index']}"


# Per trial, its folds' best validation accuracy: trial 0 has the best single fold, trial 1
# the best mean.
FOLD_VALUES = {0: [0.90, 0.50, 0.90], 1: [0.80, 0.82, 0.78]}


def test_each_trial_trains_once_per_fold_and_is_ranked_on_its_mean(tmp_path):
    import statistics

    base, config = setup(folds=3)
    candidates = st.suggest(None, tmp_path / "suggest", base, config, 7, 2)
    assert [(c["trial"], c["fold"]["index"]) for c in candidates] == [
        (t, k) for t in (0, 1) for k in range(3)
    ]
    assert {c["fold"]["count"] for c in candidates} == {3}
    for trial in (0, 1):  # every fold of a trial trains the same recipe
        specs = [c["model_spec"] for c in candidates if c["trial"] == trial]
        assert all(spec == specs[0] for spec in specs)
    models = [
        fold_model(tmp_path, c, FOLD_VALUES[c["trial"]][c["fold"]["index"]]) for c in candidates
    ]
    summary = told(tmp_path / "suggest", tmp_path / "tell", base, config, models[::-1])
    assert summary.folds == 3
    trials = {t.trial: t for t in summary.trials}
    for number, values in FOLD_VALUES.items():
        assert trials[number].value == pytest.approx(statistics.fmean(values))
        assert trials[number].std == pytest.approx(statistics.stdev(values))
        assert trials[number].fold_values == pytest.approx(values)
    best = summary.best
    assert best is not None
    assert best.trial == 1 and best.value == pytest.approx(0.80)
    assert best.runner_up == pytest.approx(statistics.fmean(FOLD_VALUES[0]))
    assert best.std == pytest.approx(0.02)
    # the lead's standard error from the paired fold differences (-0.10, 0.32, -0.12)
    assert best.lead_se == pytest.approx(statistics.stdev([-0.10, 0.32, -0.12]) / 3**0.5)
    # the mean curve over the folds is what the study holds and the report draws
    assert best.history["val_accuracy"] == pytest.approx([0.70, 0.80, 0.75])
    text = write_report(
        summary, tmp_path / "report.html", {"train": 900, "validation": 100}
    ).read_text()
    assert "val_accuracy (mean ± std, 3 folds)" in text
    assert "the objective is the mean over 3 folds of each fold's highest val_accuracy" in text
    assert "(validation split)" not in text
    assert "0.8000 ± 0.0200" in text
    assert "3 folds of train + validation: each of its 1000 images validates once" in text
    # a 0.033 lead inside a 0.14 standard error: more images would not tell these two apart
    assert "from the spread of the two trials&#x27; fold differences" in text
    assert "coin toss" in text and "needs about" not in text


def test_a_trial_that_lacks_a_fold_is_a_clear_error(tmp_path):
    base, config = setup(folds=3)
    candidates = st.suggest(None, tmp_path / "suggest", base, config, 7, 1)
    models = [fold_model(tmp_path, c, 0.8) for c in candidates if c["fold"]["index"] != 1]
    with pytest.raises(ValueError, match=r"trial 0 of study cnn lacks the Models of fold\(s\) 1"):
        st.tell(tmp_path / "suggest", tmp_path / "tell", base, config, models)


def test_a_model_of_another_fold_count_is_refused(tmp_path):
    base, config = setup(folds=3)
    candidates = st.suggest(None, tmp_path / "suggest", base, config, 7, 1)
    other = {**candidates[0], "fold": {"index": 0, "count": 2}}
    with pytest.raises(ValueError, match="not on one of the study's 3 folds"):
        st.tell(
            tmp_path / "suggest",
            tmp_path / "tell",
            base,
            config,
            [fold_model(tmp_path, other, 0.8)],
        )


def test_a_winner_of_folds_is_ranked_on_train_and_validation(tmp_path):
    base, config = setup(folds=3)
    candidates = st.suggest(None, tmp_path / "suggest", base, config, 7, 2)
    models = [
        fold_model(tmp_path, c, FOLD_VALUES[c["trial"]][c["fold"]["index"]]) for c in candidates
    ]
    summary = told(tmp_path / "suggest", tmp_path / "tell", base, config, models)
    examples = {"train": 630, "validation": 70, "test": 300}
    winners = [
        Candidate.model_validate(w) for w in st.winner_candidates(summary, base, [0], examples)
    ]
    outcome = winners[0].searched
    assert outcome is not None
    assert (outcome.folds, outcome.validation_examples, outcome.test_examples) == (3, 700, 300)
    assert outcome.value_std == pytest.approx(0.02)
    # the winner retrains as every candidate does: on the train split, no fold
    assert all(w.fold is None and w.trial is None for w in winners)
