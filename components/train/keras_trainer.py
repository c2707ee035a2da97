"""Keras training: registry model, tf.data input, transfer then fine-tune, resumable, exported.

Preemption: each phase backs up into `<checkpoint_dir>/<phase>/` every epoch (BackupAndRestore)
and appends its history to a CSV there. A finished phase leaves `<phase>.done.weights.h5`, so a
restarted step skips it. A step killed mid-phase resumes at its last finished epoch.
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from components.common.dataset import read_info
from components.common.files import write_json
from components.common.model_card import ModelCard
from components.spec import ModelSpec
from components.train.checkpoints import resume_message
from components.train.input import make_dataset
from components.train.models import build_model

CACHE_LIMIT_BYTES = 2 * 1024**3


# --- hardware --------------------------------------------------------------------------------


def choose_strategy() -> Any:
    """TPUStrategy on a TPU VM, MultiWorkerMirrored when TF_CONFIG names several workers,
    Mirrored for several local GPUs, else the default (one device) strategy."""
    import json

    import tensorflow as tf

    if os.environ.get("TPU_NAME") or os.environ.get("TPU_WORKER_ID") is not None:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=os.environ.get("TPU_NAME", "local")
        )
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    cluster = json.loads(os.environ.get("TF_CONFIG") or os.environ.get("CLUSTER_SPEC") or "{}")
    workers = cluster.get("cluster", {}).get("worker", []) + cluster.get("cluster", {}).get(
        "chief", []
    )
    if len(workers) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def precision_policy(spec: ModelSpec, strategy: Any) -> str:
    import tensorflow as tf

    if spec.mixed_precision == "off":
        return "float32"
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "mixed_bfloat16"
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return "float32"


# --- recipe pieces ---------------------------------------------------------------------------


def learning_rate(spec: ModelSpec, base: float, epochs: int, steps_per_epoch: int) -> Any:
    """A float, or a warm-up + cosine decay schedule over the phase's steps."""
    import keras

    if spec.optimizer.schedule == "constant":
        return base
    warmup = spec.optimizer.warmup_epochs * steps_per_epoch
    total = max(epochs * steps_per_epoch - warmup, 1)
    if warmup:
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=base / 100,
            decay_steps=total,
            warmup_target=base,
            warmup_steps=warmup,
        )
    return keras.optimizers.schedules.CosineDecay(initial_learning_rate=base, decay_steps=total)


def make_optimizer(spec: ModelSpec, rate: Any) -> Any:
    import keras

    o = spec.optimizer
    if o.name == "adam":
        return keras.optimizers.Adam(rate)
    if o.name == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=o.weight_decay or 0.004)
    if o.name == "sgd":
        return keras.optimizers.SGD(
            rate, momentum=o.momentum, nesterov=True, weight_decay=o.weight_decay or None
        )
    return keras.optimizers.RMSprop(rate, momentum=o.momentum)


def augmentation_layers(spec: ModelSpec) -> list[Any]:
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


def set_trainable(built: Any, phase: str, unfreeze_layers: int) -> None:
    """head: the pretrained backbone is frozen. fine_tune: the top `unfreeze_layers` layers
    (all when 0) train; batch norm stays in inference mode since the backbone is called with
    training=False."""
    if built.backbone is None:
        return
    if phase == "head":
        built.backbone.trainable = False
        return
    built.backbone.trainable = True
    if unfreeze_layers:
        for layer in built.backbone.layers[:-unfreeze_layers]:
            layer.trainable = False


# --- training --------------------------------------------------------------------------------


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
    assert spec.architecture is not None
    info = read_info(dataset_dir)
    keras.utils.set_random_seed(seed)
    num_classes = int(info["num_classes"])
    channels = int(info["channels"])
    model_dir = Path(model_dir)
    # Without a checkpoint folder nothing can resume: back up into a throw-away one.
    checkpoints = (
        Path(checkpoint_dir) if checkpoint_dir else Path(tempfile.mkdtemp(prefix="checkpoints-"))
    )

    strategy = choose_strategy()
    policy = precision_policy(spec, strategy)
    keras.mixed_precision.set_global_policy(policy)
    with strategy.scope():
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
    batch_size = spec.batch_size * strategy.num_replicas_in_sync
    steps_per_epoch = max(math.ceil(n_train / batch_size), 1)
    cache = n_train * built.input_size[0] * built.input_size[1] * channels * 4 < CACHE_LIMIT_BYTES
    train = make_dataset(
        dataset_dir,
        "train",
        built.input_size,
        channels,
        batch_size,
        shuffle=True,
        seed=seed,
        cache=cache,
    )
    augment = augmentation_layers(spec)
    if augment:
        pipeline = keras.Sequential(augment)
        train = train.map(
            lambda x, y: (pipeline(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE
        )
    validation = None
    if int(info["num_examples"]["validation"]):
        validation = make_dataset(
            dataset_dir, "validation", built.input_size, channels, batch_size, cache=cache
        )
    if spec.label_smoothing:
        train = train.map(lambda x, y: (x, tf.one_hot(y, num_classes)))
        if validation is not None:
            validation = validation.map(lambda x, y: (x, tf.one_hot(y, num_classes)))
    monitor = "val_accuracy" if validation is not None else "accuracy"

    pretrained = built.backbone is not None and spec.weights != "none"
    phases = [("head", spec.epochs, spec.optimizer.learning_rate)]
    if pretrained and spec.fine_tune.epochs:
        phases.append(("fine_tune", spec.fine_tune.epochs, spec.fine_tune.learning_rate))

    started = time.monotonic()
    history: dict[str, list[float]] = {}
    phase_log = []
    announce_resume(spec.name, seed, checkpoints, phases)
    for phase, epochs, base_rate in phases:
        phase_dir = checkpoints / phase
        done_marker = checkpoints / f"{phase}.done.weights.h5"
        set_trainable(built, phase if pretrained else "fine_tune", spec.fine_tune.unfreeze_layers)
        with strategy.scope():
            loss: Any = (
                keras.losses.CategoricalCrossentropy(label_smoothing=spec.label_smoothing)
                if spec.label_smoothing
                else keras.losses.SparseCategoricalCrossentropy()
            )
            model.compile(
                optimizer=make_optimizer(
                    spec, learning_rate(spec, base_rate, epochs, steps_per_epoch)
                ),
                loss=loss,
                metrics=["accuracy"],
                jit_compile=spec.jit_compile,
            )
        if done_marker.is_file():
            model.load_weights(done_marker)
            print(f"phase {phase}: finished before a restart, weights restored from {done_marker}")
        else:
            phase_dir.mkdir(parents=True, exist_ok=True)
            callbacks: list[Any] = [
                keras.callbacks.BackupAndRestore(str(phase_dir / "backup")),
                keras.callbacks.CSVLogger(str(phase_dir / "history.csv"), append=True),
            ]
            if spec.early_stopping_patience:
                callbacks.append(
                    keras.callbacks.EarlyStopping(
                        monitor=monitor,
                        mode="max",
                        patience=spec.early_stopping_patience,
                        restore_best_weights=True,
                    )
                )
            if spec.reduce_lr_patience:
                callbacks.append(
                    keras.callbacks.ReduceLROnPlateau(
                        monitor=monitor, mode="max", factor=0.2, patience=spec.reduce_lr_patience
                    )
                )
            if os.environ.get("AIP_TENSORBOARD_LOG_DIR"):
                callbacks.append(
                    keras.callbacks.TensorBoard(
                        os.path.join(os.environ["AIP_TENSORBOARD_LOG_DIR"], phase)
                    )
                )
            model.fit(
                train, validation_data=validation, epochs=epochs, callbacks=callbacks, verbose=2
            )
            model.save_weights(done_marker)
        phase_history = read_history_csv(phase_dir / "history.csv")
        for name, values in phase_history.items():
            history.setdefault(name, []).extend(values)
        phase_log.append(
            {
                "phase": phase,
                "epochs_run": len(phase_history.get("loss", [])),
                "trainable_weights": len(model.trainable_weights),
                "learning_rate": base_rate,
            }
        )

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
            "phases": phase_log,
            "seconds": round(time.monotonic() - started, 2),
            "train_examples": n_train,
            "parameters": int(model.count_params()),
            "strategy": type(strategy).__name__,
            "replicas": int(strategy.num_replicas_in_sync),
            "precision": policy,
        },
        history=history,
        dataset_fingerprint=info.get("fingerprint"),
    )
    card.save(model_dir)
    write_json(model_dir / "history.json", history)
    return card


def epochs_backed_up(phase_dir: Path) -> int:
    """Epochs of a phase that BackupAndRestore saved (its training_metadata.json), else 0."""
    metadata = phase_dir / "backup" / "training_metadata.json"
    if not metadata.is_file():
        return 0
    return int(json.loads(metadata.read_text())["epoch"])


def announce_resume(
    name: str, seed: int, checkpoints: Path, phases: list[tuple[str, int, float]]
) -> None:
    """Say where a restarted training picks up, over all phases (nothing on a first start)."""
    total = sum(epochs for _, epochs, _ in phases)
    done = 0
    for phase, epochs, _ in phases:
        if (checkpoints / f"{phase}.done.weights.h5").is_file():
            done += epochs
            continue
        done += epochs_backed_up(checkpoints / phase)
        break
    if done:
        print(resume_message(name, seed, done, total), flush=True)


def read_history_csv(path: Path) -> dict[str, list[float]]:
    """CSVLogger's per-epoch rows (appended across restarts) as {metric: [values]}."""
    if not path.is_file():
        return {}
    rows: dict[int, dict[str, str]] = {}
    with path.open() as handle:
        for row in csv.DictReader(handle):
            if row.get("epoch", "").isdigit():
                rows[int(row["epoch"])] = row  # a re-run epoch replaces its earlier row
    history: dict[str, list[float]] = {}
    for epoch in sorted(rows):
        for name, value in rows[epoch].items():
            if name != "epoch" and value not in ("", None):
                history.setdefault(name, []).append(float(value))
    return history
