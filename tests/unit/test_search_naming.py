"""A search's trials in the console and the results folder: each trial has its own name, log,
curves page and outputs link, and the step counter counts the search's tasks before the run."""

from __future__ import annotations

import io
import json
from pathlib import Path

from kfp import dsl

from pipelines.config import load_experiment
from pipelines.targets.base import RunOptions
from pipelines.targets.local import LocalTarget
from pipelines.targets.local.capture import _candidate_of
from pipelines.targets.local.console import Console
from pipelines.targets.local.results import write_results

SEARCH = (
    "models.0.search={trials: 5, parallel_trials: 2, algorithm: random, space: "
    "{batch_size: {choice: [16, 64]}}}"
)


def _trial_candidate(trial: int) -> dict:
    return {"model_spec": {"name": "small-cnn", "framework": "keras"}, "seed": 0.0, "trial": trial}


def test_a_trial_task_is_named_by_its_trial_not_its_seed(tmp_path: Path) -> None:
    stream = io.StringIO()
    console = Console(20, stream=stream)
    records = []
    for trial in (0, 2):
        candidate, seed, number = _candidate_of({"candidate": _trial_candidate(trial)})
        record = console.new_task(
            name="train",
            step="search",
            run_dir=tmp_path,
            candidate=candidate,
            seed=seed,
            trial=number,
            trials=16,
        )
        console.started(record)
        records.append(record)
    assert [r.label for r in records] == [
        "search small-cnn trial 1/16",
        "search small-cnn trial 3/16",
    ]
    assert stream.getvalue().splitlines() == [
        "[1/20] search small-cnn trial 1/16 ...",
        "[2/20] search small-cnn trial 3/16 ...",
    ]
    assert len({r.slug for r in records}) == 2
    # a plain training keeps its seed name
    plain = console.new_task(
        name="train", step="train", run_dir=tmp_path, candidate="small-cnn", seed=1
    )
    assert (plain.label, plain.slug) == ("train small-cnn seed 1", "train-small-cnn-seed1")


def test_each_trial_gets_its_own_curves_page_and_outputs_link(tmp_path: Path) -> None:
    run_dir = tmp_path / "imgclf-x-1"
    console = Console(9, stream=io.StringIO())
    tasks = []
    for trial in range(3):
        iteration = run_dir / f"for-loop-4-iteration-{trial}" / "train"
        (iteration / "model").mkdir(parents=True)
        (iteration / "model" / "model_card.json").write_text(json.dumps({"training": {}}))
        (iteration / "curves").write_text(f"<html>trial {trial}</html>")
        record = console.new_task(
            name="train-2",
            step="search",
            run_dir=run_dir,
            candidate="small-cnn",
            seed=0,
            trial=trial,
            trials=3,
        )
        record.status = "SUCCESS"
        record.outputs = {
            "model": dsl.Model(name="model", uri=str(iteration / "model")),
            "curves": dsl.HTML(name="curves", uri=str(iteration / "curves")),
        }
        tasks.append(record)
    results = write_results(run_dir, "x", tasks)
    assert sorted(p.name for p in results.reports) == [
        f"curves-small-cnn-trial{n}.html" for n in (1, 2, 3)
    ]
    for trial in range(3):
        page = run_dir / f"curves-small-cnn-trial{trial + 1}.html"
        assert page.read_text() == f"<html>trial {trial}</html>"
        link = run_dir / f"small-cnn-trial{trial + 1}"
        assert link.resolve() == (run_dir / f"for-loop-4-iteration-{trial}").resolve()


def test_the_step_counter_counts_a_search_before_the_run_starts(tmp_path: Path) -> None:
    plain = load_experiment("digits", ["seeds=[0, 1]"])
    searched = load_experiment("digits", ["seeds=[0, 1]", SEARCH])
    plain_total = LocalTarget(plain, RunOptions(runs_dir=tmp_path)).expected_tasks()
    searched_total = LocalTarget(searched, RunOptions(runs_dir=tmp_path)).expected_tasks()
    # 5 trials in rounds of 2, 2, 1: three suggests, three tells and five trials; the winner is
    # trained and evaluated per seed, as the plain candidate was, and so is the untuned recipe
    # beside it (two seeds, train and evaluate).
    assert searched_total - plain_total == 3 + 3 + 5 + 2 * 2
