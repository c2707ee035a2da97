"""compare.on_failure: continue turns a failed training or evaluation into a recorded outcome,
which compare leaves out and names; stop (the default) fails as before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.common.results import EvaluationResult, RunFailure
from components.compare.run import compare, to_markdown, write_html
from components.evaluate.run import failed_result, recorded
from components.spec import Candidate
from components.train.run import recording_failure
from pipelines.config import ConfigError, load_experiment


def result(name: str, seed: int, accuracy: float) -> EvaluationResult:
    return EvaluationResult(
        name=name,
        seed=seed,
        framework="keras",
        model_uri=f"/m/{name}",
        metrics={"accuracy": accuracy},
    )


def failed(name: str, seed: int, step: str = "train") -> EvaluationResult:
    failure = RunFailure(name=name, seed=seed, step=step, error="ValueError: no such weights")
    return EvaluationResult.model_validate(failed_result(failure, "keras", f"/m/{name}"))


def test_compare_ranks_the_runs_that_succeeded_and_names_the_failed(tmp_path: Path) -> None:
    summary = compare(
        [result("small", 0, 0.91), failed("big", 0), result("small", 1, 0.93)], "accuracy", 0.9
    )
    assert [row.name for row in summary.rows] == ["small"] and summary.runs == 2
    assert summary.best.name == "small" and summary.gate.passed
    assert [(f.name, f.seed, f.step) for f in summary.failed] == [("big", 0, "train")]
    assert "- big seed 0 failed in train: ValueError: no such weights" in to_markdown(summary)
    page = write_html(summary, tmp_path / "comparison.html").read_text()
    assert "Failed runs" in page and "ValueError: no such weights" in page


def test_compare_with_every_run_failed_fails_and_lists_them() -> None:
    with pytest.raises(ValueError, match=r"every run failed \(big seed 0 \(evaluate: ValueError"):
        compare([failed("big", 0, "evaluate")], "accuracy", 0.9)


def candidate() -> Candidate:
    experiment = load_experiment("digits")
    return Candidate.model_validate(experiment.candidates()[0])


def broken_training(*args: object, **kwargs: object) -> None:
    raise ValueError("Unable to load weights: not an HDF5 file")


def test_continue_records_a_training_failure_in_the_model_folder(tmp_path: Path, capsys) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "partial.keras").write_text("half written")
    failure, card = recording_failure("continue", model, candidate(), broken_training)
    assert card is None and failure is not None
    assert (failure.name, failure.seed, failure.step) == ("small-cnn", 0, "train")
    assert failure.error == "ValueError: Unable to load weights: not an HDF5 file"
    assert RunFailure.read(model) == failure
    assert sorted(p.name for p in model.iterdir()) == ["failure.json"]  # no half a model
    assert "Traceback" in capsys.readouterr().err  # the log keeps the whole story


def test_stop_lets_the_training_failure_fail_the_step(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an HDF5 file"):
        recording_failure("stop", tmp_path / "model", candidate(), broken_training)
    assert not (tmp_path / "model").exists()
    with pytest.raises(ValueError, match="on_failure is 'ignore'"):
        recording_failure("ignore", tmp_path / "model", candidate(), broken_training)


def test_a_worker_node_never_records_a_failure_in_the_shared_model_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a multi-node custom job every replica runs the step with the same Model folder: a
    failing worker must neither delete what the chief writes there nor succeed."""
    spec = {
        "cluster": {"workerpool0": ["chief:2222"], "workerpool1": ["worker-0:2222"]},
        "task": {"type": "workerpool1", "index": 0},
    }
    monkeypatch.setenv("CLUSTER_SPEC", json.dumps(spec))
    model = tmp_path / "model"
    model.mkdir()
    (model / "model_card.json").write_text("{}")  # the chief's
    with pytest.raises(ValueError, match="not an HDF5 file"):
        recording_failure("continue", model, candidate(), broken_training)
    assert sorted(p.name for p in model.iterdir()) == ["model_card.json"]
    monkeypatch.setenv("CLUSTER_SPEC", json.dumps({**spec, "task": {"type": "workerpool0"}}))
    failure, _ = recording_failure("continue", model, candidate(), broken_training)
    assert failure is not None and RunFailure.read(model) == failure  # the chief records it


def test_a_stop_signal_is_never_recorded_as_a_failure(tmp_path: Path) -> None:
    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        recording_failure("continue", tmp_path / "model", candidate(), interrupted)
    assert RunFailure.read(tmp_path / "model") is None


def test_evaluate_hands_on_a_recorded_training_failure_and_records_its_own(tmp_path: Path) -> None:
    def never(*args: object, **kwargs: object) -> dict:
        raise AssertionError("evaluated a model that failed to train")

    earlier = RunFailure(name="big", seed=1, step="train", error="ValueError: x")
    earlier.write(tmp_path / "model")
    for on_failure in ("stop", "continue"):
        assert recorded(on_failure, tmp_path / "model", {}, never) == (earlier, {})

    def broken(*args: object, **kwargs: object) -> dict:
        raise MemoryError("out of memory")

    metadata = {"name": "big", "seed": 2.0}  # kfp.local's float ints
    failure, metrics = recorded("continue", tmp_path / "other", metadata, broken)
    assert failure == RunFailure(
        name="big", seed=2, step="evaluate", error="MemoryError: out of memory"
    )
    with pytest.raises(MemoryError):
        recorded("stop", tmp_path / "other", metadata, broken)


def test_compare_on_failure_is_stop_unless_set() -> None:
    assert load_experiment("digits").compare.on_failure == "stop"
    assert (
        load_experiment("digits", ["compare.on_failure=continue"]).compare.on_failure == "continue"
    )
    with pytest.raises(ConfigError, match="compare.on_failure"):
        load_experiment("digits", ["compare.on_failure=skip"])
