"""A search compiles into pipeline structure on vertex and kfp: rounds of suggest -> a loop of
trial train tasks -> tell, chained through the study artifact, then the winner per seed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.config import load_experiment
from pipelines.targets import get_target
from pipelines.targets.base import RunOptions

GCP = ("gcp.project=my-project", "gcp.bucket=gs://my-bucket")
# An experiment with one searched candidate: 16 trials in rounds of 4, then the winner.
SEARCHED: dict[str, Any] = {
    "data": {"source": "tfds:mnist", "image_size": [28, 28], "channels": 1},
    "models": [
        {
            "name": "lenet5",
            "architecture": "lenet5",
            "params": {"activation": "relu", "pooling": "max", "batch_norm": True},
            "epochs": 30,
            "search": {
                "trials": 16,
                "parallel_trials": 4,
                "metric": "val_accuracy",
                "algorithm": "tpe",
                "early_stop": "median",
                "space": {
                    "optimizer.learning_rate": {"log_uniform": [3.0e-4, 3.0e-3]},
                    "batch_size": {"choice": [64, 128, 256]},
                    "params.dropout": {"uniform": [0.1, 0.5]},
                },
            },
        }
    ],
    "resources": {"vertex": {"machine_type": "n1-standard-8"}},
}


def compile_spec(tmp_path: Path, target: str, overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    source = tmp_path / "searched.yaml"
    source.write_text(yaml.safe_dump(SEARCHED))
    experiment = load_experiment(str(source), [*GCP, *overrides])
    path = tmp_path / f"searched.{target}.yaml"
    get_target(target, experiment, RunOptions(runs_dir=tmp_path / "runs")).compile(path)
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return documents[0]


def root_tasks(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return spec["root"]["dag"]["tasks"]


def constant(task: dict[str, Any], name: str) -> Any:
    return task["inputs"]["parameters"][name]["runtimeValue"]["constant"]


def producer(task: dict[str, Any], name: str, kind: str = "artifacts") -> str:
    source = task["inputs"][kind][name]
    key = "taskOutputArtifact" if kind == "artifacts" else "taskOutputParameter"
    return source[key]["producerTask"]


def by_component(spec: dict[str, Any], prefix: str) -> dict[str, dict[str, Any]]:
    return {
        name: task
        for name, task in root_tasks(spec).items()
        if task["componentRef"]["name"].rstrip("-0123456789") == f"comp-{prefix}"
    }


def loop_body(spec: dict[str, Any], loop: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]


@pytest.mark.parametrize("target", ["vertex", "kfp"])
def test_rounds_of_suggest_trials_and_tell_chained_through_the_study(tmp_path, target):
    spec = compile_spec(tmp_path, target, ("models.0.search.trials=10",))  # rounds 4, 4, 2
    suggests = by_component(spec, "suggest")
    tells = by_component(spec, "tell")
    assert len(suggests) == len(tells) == 3
    assert sorted(constant(t, "count") for t in suggests.values()) == [2, 4, 4]

    # the chain: suggest 1 -> tell 1 -> suggest 2 -> tell 2 -> suggest 3 -> tell 3
    first = [n for n, t in suggests.items() if "previous" not in t["inputs"].get("artifacts", {})]
    assert len(first) == 1
    order, step = [], first[0]
    while True:
        order.append(step)
        tell = next(n for n, t in tells.items() if producer(t, "previous") == step)
        order.append(tell)
        following = [
            n for n, t in suggests.items() if n not in order and producer(t, "previous") == tell
        ]
        if not following:
            break
        step = following[0]
    assert len(order) == 6
    counts = [constant(suggests[n], "count") for n in order[::2]]
    assert counts == [4, 4, 2]

    for task in suggests.values():
        recipe = constant(task, "model_spec")
        assert "search" not in recipe and recipe["architecture"] == "lenet5"
        study = constant(task, "study_config")
        assert "trials" not in study  # so a rerun with more trials continues the same study
        assert study["space"]["optimizer.learning_rate"] == {"log_uniform": [3.0e-4, 3.0e-3]}
        assert constant(task, "seed") == 0


@pytest.mark.parametrize("target", ["vertex", "kfp"])
def test_each_round_loops_over_its_suggestions_and_tell_collects_the_models(tmp_path, target):
    spec = compile_spec(tmp_path, target)
    loops = {n: t for n, t in root_tasks(spec).items() if "parameterIterator" in t}
    trial_loops = {}
    for name, loop in loops.items():
        source = loop["inputs"]["parameters"][loop["parameterIterator"]["items"]["inputParameter"]]
        trial_loops[name] = source["taskOutputParameter"]["producerTask"]
    suggests, tells = by_component(spec, "suggest"), by_component(spec, "tell")
    assert sorted(v for v in trial_loops.values() if v in suggests) == sorted(suggests)
    winner_loops = [n for n, p in trial_loops.items() if p in tells]
    assert len(winner_loops) == 1  # the winner's seeds loop over the last tell's output
    for name, source in trial_loops.items():
        body = loop_body(spec, loops[name])
        components = sorted(t["componentRef"]["name"].rstrip("-0123456789") for t in body.values())
        if source in suggests:
            assert components == ["comp-train"]
        else:
            assert components == ["comp-evaluate", "comp-train"]
    for tell in tells.values():
        assert "trial_models" in tell["inputs"]["artifacts"]
    compare = root_tasks(spec)["compare"]["inputs"]["parameters"]
    assert "searched_results" in compare and "keras_results" not in compare


def test_trials_get_the_training_hardware_on_kfp(tmp_path):
    spec = compile_spec(tmp_path, "kfp", ("resources.kfp.gpus=1",))
    executors = spec["deploymentSpec"]["executors"]
    trains = [e for name, e in executors.items() if name.startswith("exec-train")]
    assert len(trains) == 5  # four rounds of trials and the winner
    for executor in trains:
        accelerator = executor["container"]["resources"]["accelerator"]
        assert (accelerator.get("resourceType") or accelerator.get("type")) == "nvidia.com/gpu"
    for name in ("exec-suggest", "exec-tell"):
        assert "accelerator" not in executors[name]["container"].get("resources", {})


def test_trials_run_on_the_candidates_vertex_hardware_with_retries(tmp_path):
    spec = compile_spec(
        tmp_path,
        "vertex",
        ("resources.vertex.accelerator=NVIDIA_L4", "resources.vertex.retries=2"),
    )
    trains = [
        t
        for c in spec["components"].values()
        if "dag" in c
        for t in c["dag"]["tasks"].values()
        if t["componentRef"]["name"].rstrip("-0123456789") == "comp-train"
    ]
    assert len(trains) == 5
    assert all(t["retryPolicy"]["maxRetryCount"] == 2 for t in trains)
    executors = spec["deploymentSpec"]["executors"]
    for name, executor in executors.items():
        if name.startswith("exec-train"):
            accelerator = executor["container"]["resources"]["accelerator"]
            assert (accelerator.get("resourceType") or accelerator.get("type")) == "NVIDIA_L4"


def test_two_searched_candidates_are_gathered_for_compare(tmp_path):
    second = (
        "models.1={name: lenet5-classic, architecture: lenet5, epochs: 2, search: {trials: 2, "
        "parallel_trials: 2, space: {batch_size: {choice: [64, 128]}}}}"
    )
    spec = compile_spec(tmp_path, "kfp", (second,))
    assert len(by_component(spec, "suggest")) == 4 + 1
    gathers = by_component(spec, "gather")
    assert len(gathers) == 1
    compare = root_tasks(spec)["compare"]["inputs"]["parameters"]
    assert producer(root_tasks(spec)["compare"], "searched_results", "parameters") in gathers
    assert "searched_results" in compare
