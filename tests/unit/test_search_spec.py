"""The `search:` grammar of a candidate and its validation, before anything runs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.spec import ModelSpec, Search, apply_overrides
from pipelines.cli import EXIT_USAGE, main
from pipelines.config import ConfigError, load_experiment

SEARCH: dict[str, Any] = {
    "trials": 16,
    "parallel_trials": 4,
    "metric": "val_accuracy",
    "algorithm": "tpe",
    "early_stop": "median",
    "space": {
        "optimizer.learning_rate": {"log_uniform": [1.0e-4, 1.0e-2]},
        "batch_size": {"choice": [32, 64, 128]},
        "params.dropout": {"uniform": [0.0, 0.5]},
        "augment.rotation": {"uniform": [0.0, 0.15]},
        "epochs": {"int": [2, 6]},
    },
}
BASE: dict[str, Any] = {
    "data": {"source": "sklearn:digits", "image_size": [28, 28], "channels": 1},
    "models": [{"name": "lenet5", "architecture": "lenet5", "search": SEARCH}],
}


def write(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def with_search(**changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(BASE)
    search = raw["models"][0]["search"]
    for key, value in changes.items():
        if value is None:
            search.pop(key)
        else:
            search[key] = value
    return raw


def with_space(path: str, distribution: Any) -> dict[str, Any]:
    return with_search(space={path: distribution})


def test_the_issue_example_validates_and_is_split_into_rounds(tmp_path):
    experiment = load_experiment(str(write(tmp_path, BASE)))
    search = experiment.models[0].search
    assert isinstance(search, Search)
    assert search.rounds() == [4, 4, 4, 4]
    assert search.direction == "maximize"
    assert search.space["epochs"].kind == "int"
    assert experiment.candidates() == []  # searched models train through their search
    assert [m.name for m in experiment.searched()] == ["lenet5"]


def test_rounds_end_with_the_remaining_trials():
    search = Search.model_validate({**SEARCH, "trials": 10, "parallel_trials": 4})
    assert search.rounds() == [4, 4, 2]
    assert Search.model_validate({**SEARCH, "trials": 3, "parallel_trials": 1}).rounds() == [1] * 3


def test_val_loss_is_minimised_and_the_study_omits_the_trial_count():
    search = Search.model_validate({**SEARCH, "metric": "val_loss"})
    assert search.direction == "minimize"
    study = search.study()
    assert "trials" not in study.model_dump()
    assert study.space == search.space


def test_grid_over_choices_with_as_many_trials_as_combinations(tmp_path):
    space = {"batch_size": {"choice": [32, 64]}, "optimizer.name": {"choice": ["adam", "sgd"]}}
    raw = with_search(algorithm="grid", trials=4, parallel_trials=2, space=space)
    search = load_experiment(str(write(tmp_path, raw))).models[0].search
    assert search is not None and search.grid_size == 4


def test_overrides_set_dotted_paths_without_touching_the_original():
    spec = {"name": "m", "optimizer": {"name": "adam"}}
    result = apply_overrides(spec, {"optimizer.learning_rate": 0.01, "params.dropout": 0.2})
    assert result["optimizer"] == {"name": "adam", "learning_rate": 0.01}
    assert result["params"] == {"dropout": 0.2}
    assert spec == {"name": "m", "optimizer": {"name": "adam"}}


BAD = [
    # paths
    (with_space("optimizer.lr", {"uniform": [0.1, 0.2]}), "'optimizer.lr' is not a field"),
    (with_space("batchsize", {"choice": [1, 2]}), "'batchsize' is not a field"),
    (with_space("optimizer", {"choice": ["adam"]}), "'optimizer' is a section"),
    (with_space("params", {"choice": [1]}), "'params' is a mapping"),
    (with_space("batch_size.x", {"choice": [1, 2]}), "'batch_size' is a single value"),
    (with_space("params.dropout.rate", {"uniform": [0, 1]}), "goes deeper than a key"),
    (with_space("name", {"choice": ["a", "b"]}), "names the candidate and cannot be searched"),
    # ranges the field's own validation rejects
    (
        with_space("optimizer.learning_rate", {"log_uniform": [1e-4, 20.0]}),
        "value 20.0 is rejected",
    ),
    (with_space("augment.rotation", {"uniform": [0.0, 1.5]}), "value 1.5 is rejected"),
    (with_space("epochs", {"int": [0, 5]}), "int value 0 is rejected"),
    (with_space("epochs", {"uniform": [1.0, 5.5]}), "value 5.5 is rejected"),
    (with_space("optimizer.name", {"choice": ["adam", "lion"]}), "value 'lion' is rejected"),
    (with_space("batch_size", {"choice": [32, 0]}), "value 0 is rejected"),
    # the grammar itself
    (with_space("optimizer.learning_rate", {"log_uniform": [0.0, 0.1]}), "positive low end"),
    (with_space("epochs", {"int": [6, 2]}), "must be below the high end"),
    (with_space("batch_size", {"choice": []}), "at least one value"),
    (with_space("batch_size", {"choice": [32, 32]}), "must be distinct"),
    (with_space("batch_size", {"choice": [32], "int": [1, 2]}), "give exactly one of"),
    (
        with_space("batch_size", {"loguniform": [1, 2]}),
        "space.batch_size.loguniform: unknown field",
    ),
    (with_space("optimizer.learning_rate", {"uniform": [0.1]}), "learning_rate.uniform"),
    (with_search(space={}), "search.space: Dictionary should have at least 1 item"),
    (with_search(trials=0), "search.trials"),
    (with_search(trials=None), "search.trials: required field is missing"),
    (with_search(parallel_trials=32), "parallel_trials (32) exceeds trials (16)"),
    (with_search(metric="accuracy"), "search.metric"),
    (with_search(algorithm="bayes"), "search.algorithm"),
    (with_search(early_stop="hyperband"), "search.early_stop"),
    (with_search(folds=0), "search.folds: folds is 0; use 1 (trials ranked on the validation"),
    (with_search(folds=21), "folds is 21; use 1 (trials ranked on the validation split) or 2 to"),
    (with_search(folds=2.5), "search.folds: Input should be a valid integer"),
    (with_search(folds=True), "search.folds: a number is expected here, not true/false"),
    (with_search(algorithm="grid"), "grid searches `choice` parameters only"),
    (
        with_search(algorithm="grid", trials=5, space={"batch_size": {"choice": [32, 64]}}),
        "the grid has 2 combinations and trials is 5; set trials: 2",
    ),
]


@pytest.mark.parametrize(("raw", "expected"), BAD, ids=[b[1][:40] for b in BAD])
def test_bad_search_is_a_config_error_that_says_what_to_fix(tmp_path, raw, expected):
    with pytest.raises(ConfigError) as error:
        load_experiment(str(write(tmp_path, raw)))
    assert expected in str(error.value)
    assert "models.0" in str(error.value)


def test_bad_cases_each_break_a_valid_experiment_once():
    assert len({yaml.safe_dump(raw) for raw, _ in BAD}) == len(BAD)
    ModelSpec.model_validate(BASE["models"][0])  # the base itself is valid


def test_search_needs_a_validation_split(tmp_path):
    raw = copy.deepcopy(BASE)
    raw["data"]["splits"] = {"validation": 0.0, "test": 0.2}
    with pytest.raises(ConfigError, match=r"data.splits.validation above 0"):
        load_experiment(str(write(tmp_path, raw)))


def test_early_stop_is_for_keras_trials(tmp_path):
    raw = copy.deepcopy(BASE)
    raw["models"][0] = {
        "name": "vit",
        "framework": "transformers",
        "checkpoint": "google/vit-base-patch16-224",
        "search": {"trials": 2, "early_stop": "median", "space": {"epochs": {"int": [1, 3]}}},
    }
    with pytest.raises(ConfigError, match="early_stop stops keras trials only"):
        load_experiment(str(write(tmp_path, raw)))


def test_set_overrides_reach_the_search_and_are_validated(tmp_path):
    path = str(write(tmp_path, BASE))
    experiment = load_experiment(path, ["models.0.search.trials=8"])
    assert experiment.models[0].search is not None
    assert experiment.models[0].search.rounds() == [4, 4]
    with pytest.raises(ConfigError, match="value 2.0 is rejected"):
        load_experiment(path, ["models.0.search.space.augment.zoom={uniform: [0.0, 2.0]}"])


def test_cli_exits_2_on_a_bad_path_before_anything_runs(tmp_path, capsys):
    path = write(tmp_path, with_space("optimizer.lr", {"uniform": [0.1, 0.2]}))
    out = tmp_path / "compiled.yaml"
    assert main(["--experiment", str(path), "--compile-only", str(out)]) == EXIT_USAGE
    assert "search.space.optimizer.lr" in capsys.readouterr().err
    assert not out.exists()


def test_folds_default_to_one_and_belong_to_the_study(tmp_path):
    path = str(write(tmp_path, BASE))
    search = load_experiment(path).models[0].search
    assert search is not None and search.folds == 1
    search = load_experiment(path, ["models.0.search.folds=5"]).models[0].search
    assert search is not None and search.study().folds == 5  # a rerun with more trials keeps it


def test_cli_exits_2_on_a_bad_fold_count(tmp_path, capsys):
    path = write(tmp_path, BASE)
    out = tmp_path / "compiled.yaml"
    argv = ["--experiment", str(path), "--set", "models.0.search.folds=1.5"]
    assert main([*argv, "--compile-only", str(out)]) == EXIT_USAGE
    assert "models.0.search.folds" in capsys.readouterr().err
    assert not out.exists()


def test_nested_space_mappings_are_the_same_dotted_paths():
    nested = Search.model_validate(
        {"trials": 2, "space": {"optimizer": {"learning_rate": {"log_uniform": [1e-4, 1e-2]}}}}
    )
    dotted = Search.model_validate(
        {"trials": 2, "space": {"optimizer.learning_rate": {"log_uniform": [1e-4, 1e-2]}}}
    )
    assert nested == dotted


@pytest.mark.parametrize(
    ("path", "where"),
    [
        ("params.dropuot", "search.space.params.dropuot"),
        ("params.filters", "search.space.params.filters"),
    ],
)
def test_searched_params_must_be_knobs_of_the_builder(tmp_path, path, where):
    with pytest.raises(ConfigError) as error:
        load_experiment(str(write(tmp_path, with_space(path, {"uniform": [0.1, 0.2]}))))
    assert f"{where}: lenet5 has no parameter" in str(error.value)
    assert "batch_norm, dropout" in str(error.value)


def test_plain_params_are_checked_too(tmp_path):
    raw = copy.deepcopy(BASE)
    raw["models"][0]["params"] = {"activation": "relu", "poolin": "max"}
    with pytest.raises(ConfigError, match="params.poolin: lenet5 has no parameter 'poolin'"):
        load_experiment(str(write(tmp_path, raw)))
