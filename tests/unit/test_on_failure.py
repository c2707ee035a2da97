"""compare.on_failure: a failed training or evaluation fails its task on every target; compare
names the planned runs that have no result and ranks the others; stop is the default."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.common.results import EvaluationResult
from components.compare.run import MISSING_RESULT, compare, to_markdown, write_html
from pipelines.config import ConfigError, load_experiment


def result(name: str, seed: int, accuracy: float) -> EvaluationResult:
    return EvaluationResult(
        name=name,
        seed=seed,
        framework="keras",
        model_uri=f"/m/{name}",
        metrics={"accuracy": accuracy},
    )


PLANNED = [("small", 0), ("small", 1), ("big", 0), ("big", 1)]


def test_compare_ranks_the_runs_with_results_and_names_the_planned_ones_without(
    tmp_path: Path,
) -> None:
    summary = compare(
        [result("small", 0, 0.91), result("big", 1, 0.80), result("small", 1, 0.93)],
        "accuracy",
        0.9,
        planned=PLANNED,
    )
    assert [row.name for row in summary.rows] == ["small", "big"] and summary.runs == 3
    assert summary.best.name == "small" and summary.gate.passed
    assert [(f.name, f.seed, f.error) for f in summary.failed] == [("big", 0, MISSING_RESULT)]
    assert f"- big seed 0: {MISSING_RESULT}" in to_markdown(summary)
    page = write_html(summary, tmp_path / "comparison.html").read_text()
    assert "Failed runs" in page and "big" in page.split("Failed runs")[1]


def test_without_a_missing_run_nothing_is_listed_failed() -> None:
    every = [result(n, s, 0.9) for n, s in PLANNED]
    assert compare(every, "accuracy", 0.5, planned=PLANNED).failed == []
    assert compare(every, "accuracy", 0.5).failed == []  # no plan: nothing to miss


def test_compare_with_every_run_failed_fails_and_lists_them() -> None:
    with pytest.raises(ValueError, match=r"every run failed \(big seed 0, big seed 1"):
        compare([], "accuracy", 0.9, planned=[("big", 1), ("big", 0)])
    with pytest.raises(ValueError, match="none was configured"):
        compare([], "accuracy", 0.9)


def test_every_model_and_seed_is_planned_a_searched_one_by_its_winner() -> None:
    experiment = load_experiment(
        "digits",
        [
            "seeds=[0,1]",
            "models.1={name: tuned, architecture: small_cnn, search: {trials: 2, space: "
            "{optimizer.learning_rate: {log_uniform: [1e-4, 1e-2]}}}}",
        ],
    )
    assert experiment.planned_runs() == [
        {"name": "small-cnn", "seed": 0},
        {"name": "small-cnn", "seed": 1},
        {"name": "tuned", "seed": 0},
        {"name": "tuned", "seed": 1},
    ]


def test_compare_on_failure_is_stop_unless_set() -> None:
    assert load_experiment("digits").compare.on_failure == "stop"
    assert (
        load_experiment("digits", ["compare.on_failure=continue"]).compare.on_failure == "continue"
    )
    with pytest.raises(ConfigError, match="compare.on_failure"):
        load_experiment("digits", ["compare.on_failure=skip"])
