"""Keras training: registry model, tf.data input, transfer then fine-tune, checkpoints, export."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from components.common.dataset import read_info
from components.common.files import write_json
from components.common.model_card import ModelCard
from components.train.input import make_dataset
from components.train.models import build_model
from pipelines.config import ModelSpec

CACHE_LIMIT_BYTES = 2 * 1024**3


def _optimizer(spec: ModelSpec, learning_rate: float | None = None) -> Any:
    import keras

    o = spec.optimizer
    lr = learning_rate if learning_rate is not None else o.learning_rate
    if o.name == "adam":
        return keras.optimizers.Adam(lr)
    if o.name == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=o.weight_decay or 0.004)
    if o.name == "sgd":
        return keras.optimizers.SGD(
            lr, momentum=o.momentum, nesterov=True, weight_decay=o.weight_decay or None
        )
    return keras.optimizers.RMSprop(lr, momentum=o.momentum)


def _augmentation(spec: ModelSpec) -> list[Any]:
    from keras import layers

    a = spec.augment
    stack: list[Any] = []
    if a.flip != "none":
        stack.append(layers.RandomFlip(a.flip))
    if a.rotation:
        stack.append(layers.RandomRotation(a.rotation))
    if a.zoom:
        stack.append(layers.RandomZoom(a.zoom))
    if a.translation:
        stack.append(layers.RandomTranslation(a.translation, a.translation))
    if a.contrast:
        stack.append(layers.RandomContrast(a.contrast))
    return stack


def train_keras(
    dataset_dir: str | Path,
    spec: ModelSpec | dict[str, Any],
    seed: int,
    model_dir: str | Path,
    checkpoint_dir: str | Path | None = None,
) -> ModelCard:
    """Train one candidate on the Dataset in `dataset_dir`; write the Model artifact to `model_dir`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    spec = spec if isinstance(spec, ModelSpec) else ModelSpec.model_validate(spec)
    info = read_info(dataset_dir)
    keras.utils.set_random_seed(seed)
    num_classes = int(info["num_classes"])
    channels = int(info["channels"])
    assert spec.architecture is not None
    built = build_model(
        spec.architecture,
        num_classes,
        tuple(info["image_size"]),
        channels,
        spec.params,
        spec.weights,
    )
    model = built.model

    n_train = int(info["num_examples"]["train"])
    pixels = built.input_size[0] * built.input_size[1] * channels * 4
    cache = n_train * pixels < CACHE_LIMIT_BYTES
    train = make_dataset(
        dataset_dir,
        "train",
        built.input_size,
        channels,
        spec.batch_size,
        shuffle=True,
        seed=seed,
        cache=cache,
    )
    augment = _augmentation(spec)
    if augment:
        pipeline = keras.Sequential(augment)
        train = train.map(
            lambda x, y: (pipeline(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE
        )
    validation = None
    if int(info["num_examples"]["validation"]):
        validation = make_dataset(
            dataset_dir, "validation", built.input_size, channels, spec.batch_size, cache=cache
        )
    monitor = "val_accuracy" if validation is not None else "accuracy"

    def _callbacks(phase: str) -> list[Any]:
        callbacks: list[Any] = []
        if spec.early_stopping_patience:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor=monitor,
                    mode="max",
                    patience=spec.early_stopping_patience,
                    restore_best_weights=True,
                )
            )
        if checkpoint_dir:
            callbacks.append(keras.callbacks.BackupAndRestore(str(Path(checkpoint_dir) / phase)))
        return callbacks

    def _compile(learning_rate: float | None = None) -> None:
        loss = (
            keras.losses.CategoricalCrossentropy(label_smoothing=spec.label_smoothing)
            if spec.label_smoothing
            else keras.losses.SparseCategoricalCrossentropy()
        )
        model.compile(optimizer=_optimizer(spec, learning_rate), loss=loss, metrics=["accuracy"])

    if spec.label_smoothing:
        train = train.map(lambda x, y: (x, tf.one_hot(y, num_classes)))
        if validation is not None:
            validation = validation.map(lambda x, y: (x, tf.one_hot(y, num_classes)))

    started = time.monotonic()
    history: dict[str, list[float]] = {}
    if built.backbone is not None and spec.weights != "none":
        built.backbone.trainable = False
    _compile()
    fitted = model.fit(
        train,
        validation_data=validation,
        epochs=spec.epochs,
        callbacks=_callbacks("head"),
        verbose=2,
    )
    _extend(history, fitted.history)

    if built.backbone is not None and spec.weights != "none" and spec.fine_tune.epochs:
        built.backbone.trainable = True
        if spec.fine_tune.unfreeze_layers:
            for layer in built.backbone.layers[: -spec.fine_tune.unfreeze_layers]:
                layer.trainable = False
        _compile(spec.fine_tune.learning_rate)
        fitted = model.fit(
            train,
            validation_data=validation,
            epochs=spec.fine_tune.epochs,
            callbacks=_callbacks("fine_tune"),
            verbose=2,
        )
        _extend(history, fitted.history)

    model_dir = Path(model_dir)
    keras_dir = model_dir / "keras"
    keras_dir.mkdir(parents=True, exist_ok=True)
    model.save(keras_dir / "model.keras")
    model.export(str(keras_dir / "saved_model"), verbose=False)
    card = ModelCard(
        framework="keras",
        name=spec.name,
        seed=seed,
        class_names=list(info["class_names"]),
        input_size=built.input_size,
        channels=channels,
        preprocessing=built.preprocessing,
        training={
            "spec": spec.model_dump(mode="json"),
            "epochs_run": len(history.get("loss", [])),
            "seconds": round(time.monotonic() - started, 2),
            "train_examples": n_train,
            "parameters": int(model.count_params()),
        },
        history=history,
        dataset_fingerprint=info.get("fingerprint"),
    )
    card.save(model_dir)
    write_json(model_dir / "history.json", history)
    return card


def _extend(history: dict[str, list[float]], new: dict[str, list[Any]]) -> None:
    for name, values in new.items():
        history.setdefault(name, []).extend(float(v) for v in values)
