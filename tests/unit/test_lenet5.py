"""LeNet-5: the classic network by default, the modern variant through `params`."""

from __future__ import annotations

import pytest

from components.models.keras import build_model, param_names


def layer_types(model) -> list[str]:
    return [type(layer).__name__ for layer in model.layers]


def test_the_default_is_the_classic_network():
    model = build_model("lenet5", 10, (28, 28), 1).model
    types = layer_types(model)
    assert types.count("AveragePooling2D") == 2 and "MaxPooling2D" not in types
    assert "BatchNormalization" not in types and "Dropout" not in types
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [6, 16]
    assert model.count_params() == 61_706  # LeNet-5's 6C5-P2-16C5-P2-120-84-10 on 28x28


def test_the_modern_variant_has_relu_max_pooling_batch_norm_and_dropout():
    params = {"activation": "relu", "pooling": "max", "batch_norm": True, "dropout": 0.4}
    model = build_model("lenet5", 10, (28, 28), 1, params).model
    types = layer_types(model)
    assert types.count("MaxPooling2D") == 2 and "AveragePooling2D" not in types
    assert types.count("BatchNormalization") == 2 and types.count("Dropout") == 2
    activations = [
        layer.activation.__name__
        for layer in model.layers
        if hasattr(layer, "activation") and type(layer).__name__ == "Activation"
    ]
    assert activations == ["relu", "relu"]


def test_bad_knobs_are_refused():
    with pytest.raises(
        ValueError, match="params.activation: Input should be .tanh. or .relu. \\(got .gelu.\\)"
    ):
        build_model("lenet5", 10, (28, 28), 1, {"activation": "gelu"})
    assert {"activation", "pooling", "batch_norm", "dropout", "input_size"} == param_names("lenet5")


def test_mnist_trains_its_recipe_without_a_search_and_lenet5_is_one_set_away():
    from pipelines.config import load_experiment

    (recipe,) = load_experiment("mnist").models
    assert recipe.architecture == "mnist_cnn" and recipe.search is None
    classic = "models.1={name: lenet5, architecture: lenet5, epochs: 30}"
    assert [m.architecture for m in load_experiment("mnist", [classic]).models] == [
        "mnist_cnn",
        "lenet5",
    ]
