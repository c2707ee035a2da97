"""Model settings that used to fail only inside training are config or preflight errors (exit 2,
before anything is compiled), naming the field and the `--set` that fixes them: architecture
knobs out of range, a weights file that is not there, an input smaller than the backbone takes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.models.keras import build_model
from components.spec import KERAS_APPLICATIONS, KERAS_SCRATCH_ARCHITECTURES
from components.spec.architectures import min_input_side, params_class
from pipelines.cli import main
from pipelines.config import ConfigError, load_experiment, weights_problems

DIGITS: dict[str, Any] = {
    "data": {"source": "sklearn:digits", "image_size": [28, 28], "channels": 1},
    "models": [{"name": "net", "architecture": "lenet5", "epochs": 1}],
}


def write(tmp_path: Path, **model: Any) -> Path:
    raw = copy.deepcopy(DIGITS)
    raw["models"][0].update(model)
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def refused(path: Path, *overrides: str) -> str:
    with pytest.raises(ConfigError) as error:
        load_experiment(str(path), list(overrides))
    return str(error.value)


def run_cli(tmp_path: Path, path: Path, capsys: Any, *overrides: str) -> tuple[int, str]:
    """The CLI as a user runs it, compiling only; returns the exit code and stderr."""
    compiled = tmp_path / "pipeline.yaml"
    argv = ["--experiment", str(path), "--compile-only", str(compiled)]
    for override in overrides:
        argv += ["--set", override]
    code = main(argv)
    assert code != 2 or not compiled.exists(), "a config error must stop before compiling"
    return code, capsys.readouterr().err


# --- (a) knobs have types and ranges -----------------------------------------------------------


@pytest.mark.parametrize(
    ("architecture", "params", "expected"),
    [
        ("lenet5", {"dropout": 5}, "params.dropout: Input should be less than 1 (got 5)"),
        ("lenet5", {"dropout": -0.1}, "params.dropout: Input should be greater than or equal"),
        ("lenet5", {"batch_norm": "often"}, "params.batch_norm: Input should be a valid boolean"),
        ("lenet5", {"dropout": True}, "params.dropout: a number is expected here"),
        ("cnn3", {"filters": [32, 0]}, "params.filters.1: Input should be greater than or equal"),
        ("cnn3", {"l2": -1}, "params.l2: Input should be greater than or equal to 0"),
        ("cnn3", {"dense": 2.5}, "params.dense: Input should be a valid integer"),
        ("mnist_cnn", {"convs_per_block": 9}, "params.convs_per_block: Input should be less"),
        ("resnet50v2", {"dropout": 1.5, "input_size": 32}, "params.dropout: Input should be less"),
        ("resnet50v2", {"input_size": 4}, "params.input_size: Input should be greater than or"),
    ],
)
def test_knob_out_of_range_is_a_config_error(tmp_path, architecture, params, expected):
    message = refused(write(tmp_path, architecture=architecture, params=params))
    assert "models.0: model 'net':" in message
    assert expected in message


def test_a_set_that_breaks_a_knob_is_blamed(tmp_path):
    message = refused(write(tmp_path), "models.0.params.dropout=5")

    assert "params.dropout: Input should be less than 1 (got 5)" in message
    assert "[from --set models.0.params.dropout=5]" in message


def test_a_searched_knob_range_is_checked_against_the_knob(tmp_path):
    search = {"trials": 2, "space": {"params.dropout": {"uniform": [0.1, 5.0]}}}
    message = refused(write(tmp_path, search=search))

    assert "search.space.params.dropout" in message and "less than 1" in message


def test_knob_errors_exit_2_on_the_command_line(tmp_path, capsys):
    code, err = run_cli(tmp_path, write(tmp_path, params={"dropout": 5}), capsys)

    assert code == 2
    assert "params.dropout: Input should be less than 1 (got 5)" in err
    assert "Traceback" not in err


def test_knobs_in_range_load_and_build(tmp_path):
    params = {"filters": [8, 16], "convs_per_block": 2, "dropout": 0.3, "dense": 16}
    experiment = load_experiment(str(write(tmp_path, architecture="mnist_cnn", params=params)))

    knobs = experiment.models[0].knobs()
    assert (knobs.convs_per_block, knobs.dropout) == (2, 0.3)
    model = build_model("mnist_cnn", 10, (28, 28), 1, params).model
    assert model.output_shape == (None, 10)
    assert sum(type(layer).__name__ == "Conv2D" for layer in model.layers) == 4


def test_mnist_cnn_valid_padding_is_the_simple_mnist_convnet_layout():
    shapes = [
        layer.output.shape[1:3]
        for layer in build_model("mnist_cnn", 10, (28, 28), 1, {}).model.layers
        if type(layer).__name__ in ("Conv2D", "MaxPooling2D")
    ]
    assert shapes == [(26, 26), (13, 13), (11, 11), (5, 5)]
    same = build_model("mnist_cnn", 10, (28, 28), 1, {"padding": "same"}).model
    assert [tuple(layer.output.shape[1:3]) for layer in same.layers if "pool" in layer.name] == [
        (14, 14),
        (7, 7),
    ]


def test_every_architecture_has_typed_knobs_with_defaults_that_validate():
    for architecture in (*KERAS_SCRATCH_ARCHITECTURES, *KERAS_APPLICATIONS):
        knobs = params_class(architecture)()
        assert "input_size" in type(knobs).model_fields
        assert min_input_side(architecture, knobs) >= 1


# --- (b) a weights file that is not there -------------------------------------------------------


def test_missing_weights_file_is_a_preflight_error_before_compiling(tmp_path, capsys):
    path = write(
        tmp_path,
        architecture="mobilenetv3small",
        params={"input_size": 32},
        weights=str(tmp_path / "absent.weights.h5"),
    )

    code, err = run_cli(tmp_path, path, capsys)

    assert code == 2
    assert "models.0.weights:" in err and "absent.weights.h5 does not exist" in err
    assert "--set models.0.weights=" in err


def test_weights_that_exist_pass_and_gs_uris_are_left_to_the_bucket(tmp_path):
    weights = tmp_path / "backbone.weights.h5"
    weights.write_bytes(b"")
    here = load_experiment(
        str(write(tmp_path, architecture="resnet50v2", weights=str(weights))),
        ["models.0.params.input_size=32"],
    )
    bucket = load_experiment(
        str(write(tmp_path, architecture="resnet50v2", weights="gs://b/w.weights.h5")),
        ["models.0.params.input_size=32"],
    )
    remote = load_experiment(
        str(write(tmp_path, architecture="resnet50v2", weights="/gcs/b/w.weights.h5")),
        ["models.0.params.input_size=32"],
    )

    assert weights_problems(here) == []
    assert weights_problems(bucket) == []
    assert weights_problems(remote, not_here=("/gcs/",)) == []
    assert len(weights_problems(remote)) == 1


def test_weights_that_keras_cannot_read_are_a_config_error(tmp_path):
    message = refused(
        write(tmp_path, architecture="resnet50v2", weights="backbone.pt"),
        "models.0.params.input_size=32",
    )

    assert "weights 'backbone.pt' is neither imagenet, none nor a weights file" in message
    assert ".weights.h5" in message


# --- (c) an input smaller than the architecture takes ---------------------------------------------


def test_backbone_input_too_small_is_a_config_error_with_the_fix(tmp_path, capsys):
    path = write(tmp_path, architecture="mobilenetv3small")

    code, err = run_cli(tmp_path, path, capsys, "data.image_size=[8,8]")

    assert code == 2
    assert "mobilenetv3small takes inputs of at least 32x32" in err
    assert "data.image_size [8, 8]" in err
    assert "--set models.0.params.input_size=32" in err and "--set data.image_size=[32,32]" in err


def test_the_fix_it_names_is_accepted(tmp_path):
    path = write(tmp_path, architecture="mobilenetv3small")

    experiment = load_experiment(
        str(path), ["data.image_size=[8,8]", "models.0.params.input_size=32"]
    )

    assert experiment.models[0].knobs().input_size == 32


@pytest.mark.parametrize(
    ("architecture", "params", "smallest"),
    [
        ("inceptionv3", {"input_size": 64}, 75),
        ("lenet5", {}, 12),
        ("cnn3", {"filters": [8] * 5}, 32),
        ("mnist_cnn", {"filters": [8, 16, 32]}, 22),  # 'valid': 22 -> 20 -> 10 -> 8 -> 4 -> 2 -> 1
        ("mnist_cnn", {"filters": [8] * 4, "padding": "same"}, 16),
    ],
)
def test_each_architecture_states_its_smallest_input(tmp_path, architecture, params, smallest):
    path = write(tmp_path, architecture=architecture, params=params)

    message = refused(path, "data.image_size=[10,10]")

    assert f"{architecture} takes inputs of at least {smallest}x{smallest}" in message
    # the registry refuses the same input the same way
    with pytest.raises(ValueError, match=f"at least {smallest}x{smallest}"):
        build_model(architecture, 10, (10, 10), 3, {**params, "input_size": None})


def test_imagenet_weights_on_grey_images_is_a_config_error(tmp_path):
    path = write(tmp_path, architecture="resnet50v2", weights="imagenet", params={"input_size": 32})

    message = refused(path)

    assert "models.0.weights:" in message and "data.channels is 1" in message
    assert "--set data.channels=3" in message
