"""Keras models: the registry (architecture name -> builder and the preprocessing it expects),
saving the keras Model artifact and loading it back as a `Classifier`.

Every model takes raw pixels (float32 in [0, 255], already resized to its input size) and
carries its own preprocessing as layers, so serving and evaluation never re-implement it.
The registry is built from the names in `components.spec`, which the config validates against.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from components.common.model_card import CARD_FILE, ModelCard
from components.models.artifact import ModelLoadError
from components.spec import KERAS_APPLICATIONS, KERAS_SCRATCH_ARCHITECTURES, parse_params
from components.spec.architectures import (
    ApplicationParams,
    CifarCnnParams,
    Cnn3Params,
    LeNet5Params,
    MnistCnnParams,
    SmallCnnParams,
    min_input_side,
    params_class,
)

APPLICATIONS = KERAS_APPLICATIONS
KERAS_DIR = "keras"
MODEL_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"
# Every keras model ends in this dense softmax layer (its logits are what temperature scaling
# divides: components/train/calibration.py, `calibrate_keras`).
CLASSIFIER_LAYER = "probabilities"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Batch norm of the scratch architectures averages its inference statistics over about the last
# 10 steps (PyTorch's and torchvision's default, momentum 0.1 in their terms). Keras' 0.99 (about
# 100 steps) leaves them mostly at their initial values through the first epochs of a small data
# set: 10k digits at batch 128 are 55 steps an epoch, and validation accuracy stayed at chance
# for 3 epochs with 0.99 where 0.9 gave 0.83-0.93; early stopping and a search rank on it.
BN_MOMENTUM = 0.9


@dataclass(frozen=True)
class BuiltModel:
    model: Any  # keras.Model
    input_size: tuple[int, int]
    preprocessing: str  # how raw [0, 255] pixels are normalised inside the model
    backbone: Any | None = None  # the pretrained part, for freeze / fine-tune


def build_model(
    architecture: str,
    num_classes: int,
    image_size: tuple[int, int],
    channels: int,
    params: dict[str, Any] | None = None,
    weights: str = "none",
) -> BuiltModel:
    """The registry model for `architecture`, its `params` checked against the spec's knobs
    (`components.spec.architectures`); `params.input_size`, when given, replaces `image_size`."""
    if architecture not in SCRATCH and architecture not in APPLICATIONS:
        known = ", ".join(sorted([*SCRATCH, *APPLICATIONS]))
        raise ValueError(f"unknown architecture '{architecture}'; known: {known}")
    knobs = parse_params(architecture, dict(params or {}))
    input_size = (
        (knobs.input_size, knobs.input_size)
        if knobs.input_size is not None
        else (int(image_size[0]), int(image_size[1]))
    )
    smallest = min_input_side(architecture, knobs)
    if min(input_size) < smallest:
        raise ValueError(
            f"{architecture} takes inputs of at least {smallest}x{smallest}; got "
            f"{input_size[0]}x{input_size[1]}"
        )
    if architecture in SCRATCH:
        return BuiltModel(
            SCRATCH[architecture](num_classes, input_size, channels, knobs),
            input_size,
            "rescale_0_1",
        )
    assert isinstance(knobs, ApplicationParams)
    return _application(architecture, num_classes, input_size, channels, weights, knobs)


def _inputs(input_size: tuple[int, int], channels: int) -> Any:
    import keras

    return keras.Input(shape=(*input_size, channels), name="image")


def _head(x: Any, num_classes: int) -> Any:
    import keras

    # float32 softmax keeps probabilities exact under mixed precision
    return keras.layers.Dense(
        num_classes, activation="softmax", dtype="float32", name=CLASSIFIER_LAYER
    )(x)


def small_cnn(
    num_classes: int, input_size: tuple[int, int], channels: int, p: SmallCnnParams
) -> Any:
    import keras
    from keras import layers

    inputs = _inputs(input_size, channels)
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(p.filters, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(p.filters, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(p.filters * 2, 3, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(p.dropout)(x)
    return keras.Model(inputs, _head(x, num_classes), name="small_cnn")


def lenet5(num_classes: int, input_size: tuple[int, int], channels: int, p: LeNet5Params) -> Any:
    """LeNet-5 (6C5-P2-16C5-P2-120-84). The defaults are the classic network (tanh, average
    pooling); `activation: relu, pooling: max, batch_norm: true, dropout: 0.4` is the modern
    variant: batch norm after each convolution, dropout before each dense layer."""
    import keras
    from keras import layers

    pool = layers.MaxPooling2D if p.pooling == "max" else layers.AveragePooling2D
    inputs = _inputs(input_size, channels)
    x = layers.Rescaling(1.0 / 255)(inputs)
    for filters, padding in ((6, "same"), (16, "valid")):
        x = layers.Conv2D(filters, 5, padding=padding, use_bias=not p.batch_norm)(x)
        if p.batch_norm:
            x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
        x = layers.Activation(p.activation)(x)
        x = pool(2)(x)
    x = layers.Flatten()(x)
    for units in (120, 84):
        if p.dropout:
            x = layers.Dropout(p.dropout)(x)
        x = layers.Dense(units, activation=p.activation)(x)
    return keras.Model(inputs, _head(x, num_classes), name="lenet5")


def _conv_bn_relu(
    x: Any, width: int, batch_norm: bool, regularizer: Any = None, padding: str = "same"
) -> Any:
    """A 3x3 convolution, batch norm (which makes its bias redundant), ReLU."""
    from keras import layers

    x = layers.Conv2D(
        width, 3, padding=padding, kernel_regularizer=regularizer, use_bias=not batch_norm
    )(x)
    if batch_norm:
        x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    return layers.Activation("relu")(x)


def cnn3(num_classes: int, input_size: tuple[int, int], channels: int, p: Cnn3Params) -> Any:
    """The 3-block VGG-style CNN family: two convs + pool per block, optional BN/dropout/L2."""
    import keras
    from keras import layers, regularizers

    regularizer = regularizers.L2(p.l2) if p.l2 else None
    inputs = _inputs(input_size, channels)
    x = layers.Rescaling(1.0 / 255)(inputs)
    for width in p.filters:
        for _ in range(2):
            x = _conv_bn_relu(x, width, p.batch_norm, regularizer)
        x = layers.MaxPooling2D()(x)
        if p.dropout:
            x = layers.Dropout(p.dropout)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(p.dense, activation="relu", kernel_regularizer=regularizer)(x)
    if p.dropout:
        x = layers.Dropout(p.dropout)(x)
    return keras.Model(inputs, _head(x, num_classes), name="cnn3")


def cifar_cnn(
    num_classes: int, input_size: tuple[int, int], channels: int, p: CifarCnnParams
) -> Any:
    """A deeper scratch CNN for CIFAR (three BN blocks, growing dropout)."""
    knobs = Cnn3Params(
        input_size=p.input_size,
        filters=[64, 128, 256],
        dropout=p.dropout,
        batch_norm=True,
        l2=5e-4,
        dense=256,
    )
    return cnn3(num_classes, input_size, channels, knobs)


def mnist_cnn(
    num_classes: int, input_size: tuple[int, int], channels: int, p: MnistCnnParams
) -> Any:
    """The small-digit CNN of common practice: blocks of 3x3 convolutions (32, then 64 filters)
    with batch norm, 2x2 max pooling and dropout 0.25, then dense 128 and dropout 0.4.

    It follows the Keras example "Simple MNIST convnet" (F. Chollet, keras.io, 2015/2020:
    32C3-P2-64C3-P2, dropout, ~99.2% on MNIST in 15 epochs) with what C. Deotte's Kaggle study
    "How to choose CNN Architecture MNIST" (2018) found to pay: batch norm after each
    convolution (Ioffe & Szegedy, ICML 2015), dropout 0.4 before the classifier (Srivastava et
    al., JMLR 2014), a 128-unit dense layer, and random rotation / zoom / shift augmentation
    (set in the recipe's `augment`); ensembles of that study's nets reach 99.75%."""
    import keras
    from keras import layers

    inputs = _inputs(input_size, channels)
    x = layers.Rescaling(1.0 / 255)(inputs)
    for width in p.filters:
        for _ in range(p.convs_per_block):
            x = _conv_bn_relu(x, width, p.batch_norm, padding=p.padding)
        x = layers.MaxPooling2D()(x)
        if p.block_dropout:
            x = layers.Dropout(p.block_dropout)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(p.dense, use_bias=not p.batch_norm)(x)
    if p.batch_norm:
        x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    x = layers.Activation("relu")(x)
    if p.dropout:
        x = layers.Dropout(p.dropout)(x)
    return keras.Model(inputs, _head(x, num_classes), name="mnist_cnn")


_BUILDERS: dict[str, Callable[..., Any]] = {
    "small_cnn": small_cnn,
    "lenet5": lenet5,
    "cnn3": cnn3,
    "cifar_cnn": cifar_cnn,
    "mnist_cnn": mnist_cnn,
}
# The scratch names come from the spec; a name without a builder fails at import, not at run time.
SCRATCH: dict[str, Callable[..., Any]] = {
    name: _BUILDERS[name] for name in KERAS_SCRATCH_ARCHITECTURES
}


def param_names(architecture: str) -> frozenset[str]:
    """The `params` a keras architecture takes (its knobs in the spec, input_size among them)."""
    return frozenset(params_class(architecture).model_fields)


def _application(
    architecture: str,
    num_classes: int,
    input_size: tuple[int, int],
    channels: int,
    weights: str,
    params: ApplicationParams,
) -> BuiltModel:
    import keras
    from keras import layers

    preprocessing = APPLICATIONS[architecture].preprocessing
    constructor = getattr(keras.applications, APPLICATIONS[architecture].class_name)
    pretrained = weights == "imagenet"
    if pretrained and channels != 3:
        raise ValueError(f"{architecture} with imagenet weights needs channels: 3")
    backbone = constructor(
        include_top=False,
        weights="imagenet" if pretrained else None,
        input_shape=(*input_size, channels),
        pooling="avg",
    )
    if weights not in ("none", "imagenet"):
        backbone.load_weights(weights)
    inputs = _inputs(input_size, channels)
    x = inputs
    if preprocessing == "tf":
        x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(x)
    elif preprocessing == "torch":
        x = layers.Rescaling(1.0 / 255)(x)
        x = layers.Normalization(mean=IMAGENET_MEAN, variance=[s * s for s in IMAGENET_STD])(x)
    x = backbone(x, training=False)  # batch norm stays in inference mode when fine-tuned
    x = layers.Dropout(params.dropout)(x)
    model = keras.Model(inputs, _head(x, num_classes), name=architecture)
    return BuiltModel(model, input_size, preprocessing, backbone)


# --- the Model artifact ----------------------------------------------------------------------


def save_model(model: Any, model_dir: Path) -> None:
    """keras/model.keras (for reloading) and keras/saved_model (for serving)."""
    keras_dir = Path(model_dir) / KERAS_DIR
    keras_dir.mkdir(parents=True, exist_ok=True)
    model.save(keras_dir / MODEL_FILE)
    model.export(str(keras_dir / SAVED_MODEL_DIR), verbose=False)


class KerasClassifier:
    """A keras Model artifact behind the `Classifier` interface of evaluate/predict."""

    def __init__(self, model_dir: Path, card: ModelCard):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        path = Path(model_dir) / KERAS_DIR / MODEL_FILE
        if not path.is_file():
            raise ModelLoadError(
                f"{path} is missing: a keras Model artifact holds {KERAS_DIR}/{MODEL_FILE} "
                f"beside {CARD_FILE}; point at the folder the train step wrote"
            )
        import keras

        self.card = card
        try:
            self.model = keras.saving.load_model(path, compile=False)
        except Exception as exc:  # keras reports a file that is no zip as "File not found"
            import zipfile

            why = (
                f"{type(exc).__name__}: {str(exc)[:200]}"
                if zipfile.is_zipfile(path)
                else "not a .keras zip archive"
            )
            raise ModelLoadError(
                f"{path} is not a valid Keras model file ({why}); it is damaged or was not "
                "written by model.save(): copy the Model artifact from the train step again"
            ) from None

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_on_batch(images), dtype=np.float32)


class HeldKerasClassifier(KerasClassifier):
    """A keras model the caller holds (the trainer's, as it saved it) behind the same
    interface, predicting as the loaded artifact does."""

    def __init__(self, model: Any, card: ModelCard):
        self.card = card
        self.model = model
