"""Keras training: registry model, tf.data input, transfer then fine-tune, resumable, exported.

Preemption: each phase backs up into `<checkpoint_dir>/<phase>/` every epoch (BackupAndRestore)
and appends its history to a CSV there. A finished phase leaves `<phase>.done.weights.h5`, so a
restarted step skips it. A step killed mid-phase resumes at its last finished epoch.
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.common.files import read_json, write_json
from components.common.folds import input_sizes
from components.common.model_card import ModelCard
from components.common.progress import EpochEvents
from components.common.results import DatasetInfo
from components.common.tfdata import make_dataset
from components.models.keras import BuiltModel, HeldKerasClassifier, build_model, save_model
from components.models.prediction import keep_test_predictions
from components.spec import Fold, ModelSpec, Optimizer, Pruning
from components.train.calibration import Calibration, calibrate_keras
from components.train.events import progress_callbacks
from components.train.keras.resume import announce_resume, done_marker
from components.train.keras.strategy import choose_strategy, precision_policy
from components.train.recipe import NESTEROV, schedule_for, weight_decay

CACHE_LIMIT_BYTES = 2 * 1024**3


# --- recipe pieces ---------------------------------------------------------------------------


def learning_rate(spec: ModelSpec, base: float, epochs: int, steps_per_epoch: int) -> Any:
    """A float, or the shared warm-up + cosine schedule (`components.train.recipe`) as a
    Keras `CosineDecay` over the phase's steps."""
    import keras

    plan = schedule_for(spec.optimizer, epochs, steps_per_epoch)
    if plan.kind == "constant":
        return base
    if plan.warmup_steps:
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=base * plan.factor(0),
            decay_steps=plan.decay_steps,
            warmup_target=base,
            warmup_steps=plan.warmup_steps,
        )
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=base, decay_steps=plan.decay_steps
    )


def make_optimizer(optimizer: Optimizer, rate: Any) -> Any:
    """The spec's optimizer with its decoupled weight decay (none when the spec says 0)."""
    import keras

    decay = weight_decay(optimizer)
    kwargs: dict[str, Any] = {"weight_decay": decay if decay > 0 else None}
    if optimizer.name == "adam":
        return keras.optimizers.Adam(rate, **kwargs)
    if optimizer.name == "adamw":
        # AdamW's own default (0.004) would apply when none is passed: pass 0 through as 0.
        return keras.optimizers.AdamW(rate, weight_decay=decay)
    if optimizer.name == "sgd":
        return keras.optimizers.SGD(rate, momentum=optimizer.momentum, nesterov=NESTEROV, **kwargs)
    return keras.optimizers.RMSprop(rate, momentum=optimizer.momentum, **kwargs)


def augmentation_layers(spec: ModelSpec) -> list[Any]:
    from keras import layers

    a = spec.augment
    stack: list[Any] = []
    if a.flip != "none":
        stack.append(layers.RandomFlip(a.flip))
    if a.rotation:
        stack.append(layers.RandomRotation(a.rotation, fill_mode=a.fill))
    if a.zoom:
        stack.append(layers.RandomZoom(a.zoom, fill_mode=a.fill))
    if a.translation:
        stack.append(layers.RandomTranslation(a.translation, a.translation, fill_mode=a.fill))
    if a.contrast:
        stack.append(layers.RandomContrast(a.contrast))
    return stack


def set_trainable(built: BuiltModel, phase: str, unfreeze_layers: int) -> None:
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


def median_stopping(prune: Pruning, offset: int, earlier: list[float]) -> Any:
    """A callback that ends training once Optuna's MedianPruner would prune the trial.

    `offset` is the epochs of earlier phases (a trial's curve runs across phases); `earlier`
    are the monitor values already recorded, replayed after a restart."""
    import keras

    from components.train.pruning import MedianStop

    stopper = MedianStop(prune)
    for epoch, value in enumerate(earlier):
        stopper.should_stop(epoch, value)

    class MedianStopping(keras.callbacks.Callback):
        stopped_epoch: int | None = None

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            value = (logs or {}).get(prune.monitor)
            if value is not None and stopper.should_stop(offset + epoch, value):
                self.stopped_epoch = offset + epoch
                self.model.stop_training = True

    return MedianStopping()


# --- training --------------------------------------------------------------------------------


@dataclass
class Setup:
    """Everything the phases need: the built model, its input and where it trains."""

    spec: ModelSpec
    info: DatasetInfo
    built: BuiltModel
    strategy: Any
    policy: str
    train: Any
    validation: Any
    steps_per_epoch: int
    checkpoints: Path
    tensorboard_dir: Path | None = None
    events: EpochEvents | None = None  # progress events, epochs counted over all phases
    epochs_done: int = 0  # epochs of the phases before the current one
    history: dict[str, list[float]] = field(default_factory=dict)
    phase_log: list[dict[str, Any]] = field(default_factory=list)
    prune: Pruning | None = None  # a search trial with early_stop: median
    fold: Fold | None = None  # a search trial's fold (search.folds)
    sizes: dict[str, int] = field(default_factory=dict)  # images of the train, validation input
    pruned_at: int | None = None  # the epoch MedianPruner stopped it at

    @property
    def monitor(self) -> str:
        return "val_accuracy" if self.validation is not None else "accuracy"

    @property
    def pretrained(self) -> bool:
        return self.built.backbone is not None and self.spec.weights != "none"


def train_keras(
    dataset_dir: str | Path,
    spec: ModelSpec,
    seed: int,
    model_dir: str | Path,
    checkpoint_dir: str | Path | None = None,
    tensorboard_dir: str | Path | None = None,
    prune: Pruning | None = None,
    fold: Fold | None = None,
    keep_predictions: bool = True,
) -> ModelCard:
    """Train one candidate on the Dataset in `dataset_dir`; write the Model artifact to `model_dir`.

    `tensorboard_dir` gets TensorBoard event files (per-epoch scalars, learning rate, the Keras
    graph), the first phase at its top and later phases in a subfolder each; None writes none.
    With `prune` (a search trial with early_stop: median), training ends at the epoch where
    MedianPruner prunes it; the card records that epoch as `pruned_at_epoch`. With a `fold`
    (a search trial's, search.folds), it trains on train + validation without the fold's images
    and validates on those (components/common/folds.py).
    `keep_predictions`: the trained model also predicts the test split into the Model
    (`components.models.prediction`), so evaluation needs no TensorFlow; with it (not for a
    search trial, ranked on its validation accuracy, which a temperature leaves as it is),
    calibration: temperature divides the logits by the temperature fitted on the validation
    split (`components.train.calibration.calibrate_keras`) before the Model is saved.
    """
    started = time.monotonic()
    setup = set_up(dataset_dir, spec, seed, checkpoint_dir, fold)
    setup.tensorboard_dir = Path(tensorboard_dir) if tensorboard_dir else None
    setup.prune = prune
    phases = [("head", spec.epochs, spec.optimizer.learning_rate)]
    if setup.pretrained and spec.fine_tune.epochs:
        phases.append(("fine_tune", spec.fine_tune.epochs, spec.fine_tune.learning_rate))
    done = announce_resume(spec.name, seed, setup.checkpoints, phases)
    setup.events = EpochEvents(
        sum(epochs for _, epochs, _ in phases), setup.steps_per_epoch, first_epoch=done
    )
    for phase, epochs, base_rate in phases:
        if setup.pruned_at is not None:
            break
        run_phase(setup, phase, epochs, base_rate)
    calibration = None
    if spec.calibration != "none" and keep_predictions:
        calibration = calibrate_keras(setup.built.model, setup.validation, spec.name)
    card = write_out(setup, seed, Path(model_dir), time.monotonic() - started, calibration)
    if keep_predictions:
        keep_test_predictions(HeldKerasClassifier(setup.built.model, card), dataset_dir, model_dir)
    return card


def set_up(
    dataset_dir: str | Path,
    spec: ModelSpec,
    seed: int,
    checkpoint_dir: str | Path | None,
    fold: Fold | None = None,
) -> Setup:
    """Seed, strategy and precision, the registry model, and the train / validation input."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    if spec.architecture is None:
        raise ValueError(f"model '{spec.name}' is not a keras model with an architecture")
    info = DatasetInfo.read(dataset_dir)
    keras.utils.set_random_seed(seed)
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
            info.num_classes,
            (info.image_size[0], info.image_size[1]),
            info.channels,
            spec.params,
            spec.weights,
        )
    batch_size = spec.batch_size * strategy.num_replicas_in_sync
    sizes = input_sizes(dataset_dir, info.num_examples, fold)
    train, validation = make_inputs(dataset_dir, spec, info, built, batch_size, seed, fold, sizes)
    steps_per_epoch = max(math.ceil(sizes["train"] / batch_size), 1)
    return Setup(
        spec,
        info,
        built,
        strategy,
        policy,
        train,
        validation,
        steps_per_epoch,
        checkpoints,
        fold=fold,
        sizes=sizes,
    )


def make_inputs(
    dataset_dir: str | Path,
    spec: ModelSpec,
    info: DatasetInfo,
    built: BuiltModel,
    batch_size: int,
    seed: int,
    fold: Fold | None,
    sizes: dict[str, int],
) -> tuple[Any, Any]:
    """The augmented training batches and the validation batches (None without a split);
    with a `fold`, its two parts of train + validation (`sizes`: images of each input)."""
    import keras
    import tensorflow as tf

    channels = info.channels
    num_classes = info.num_classes
    n_train = sizes["train"]
    size = built.input_size
    cache = n_train * size[0] * size[1] * channels * 4 < CACHE_LIMIT_BYTES
    train = make_dataset(
        dataset_dir,
        "train",
        size,
        channels,
        batch_size,
        shuffle=True,
        seed=seed,
        cache=cache,
        examples=n_train,
        fold=fold,
    )
    augment = augmentation_layers(spec)
    if augment:
        pipeline = keras.Sequential(augment)
        train = train.map(
            lambda x, y: (pipeline(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE
        )
    validation = None
    if sizes["validation"]:
        validation = make_dataset(
            dataset_dir,
            "validation",
            size,
            channels,
            batch_size,
            cache=cache,
            examples=sizes["validation"],
            fold=fold,
        )
    if spec.label_smoothing:
        train = train.map(lambda x, y: (x, tf.one_hot(y, num_classes)))
        if validation is not None:
            validation = validation.map(lambda x, y: (x, tf.one_hot(y, num_classes)))
    return train, validation


def run_phase(setup: Setup, phase: str, epochs: int, base_rate: float) -> None:
    """Compile for the phase, then restore it if it finished before a restart, or fit it
    (resuming at its last backed-up epoch); its history joins the run's."""
    import keras

    spec, model = setup.spec, setup.built.model
    phase_dir = setup.checkpoints / phase
    finished = done_marker(setup.checkpoints, phase)
    set_trainable(
        setup.built, phase if setup.pretrained else "fine_tune", spec.fine_tune.unfreeze_layers
    )
    with setup.strategy.scope():
        loss: Any = (
            keras.losses.CategoricalCrossentropy(label_smoothing=spec.label_smoothing)
            if spec.label_smoothing
            else keras.losses.SparseCategoricalCrossentropy()
        )
        rate = learning_rate(spec, base_rate, epochs, setup.steps_per_epoch)
        model.compile(
            optimizer=make_optimizer(spec.optimizer, rate),
            loss=loss,
            metrics=["accuracy"],
            jit_compile=spec.jit_compile,
        )
    pruned_file = setup.checkpoints / "pruned.json"
    if finished.is_file():
        model.load_weights(finished)
        print(f"phase {phase}: finished before a restart, weights restored from {finished}")
        if pruned_file.is_file():
            setup.pruned_at = int(read_json(pruned_file)["epoch"])
    else:
        phase_dir.mkdir(parents=True, exist_ok=True)
        stack = callbacks(setup, phase, phase_dir)
        stopping = None
        if setup.prune is not None:
            before = setup.history.get(setup.prune.monitor, [])
            resumed = read_history_csv(phase_dir / "history.csv").get(setup.prune.monitor, [])
            stopping = median_stopping(setup.prune, len(before), before + resumed)
            stack.append(stopping)
        # The datasets shuffle themselves; Keras would only warn that it cannot.
        model.fit(
            setup.train,
            validation_data=setup.validation,
            epochs=epochs,
            callbacks=stack,
            shuffle=False,
            verbose=2,
        )
        model.save_weights(finished)
        if stopping is not None and stopping.stopped_epoch is not None:
            setup.pruned_at = stopping.stopped_epoch
            write_json(pruned_file, {"epoch": setup.pruned_at})
    phase_history = read_history_csv(phase_dir / "history.csv")
    setup.epochs_done += len(phase_history.get("loss", []))
    for name, values in phase_history.items():
        setup.history.setdefault(name, []).extend(values)
    setup.phase_log.append(
        {
            "phase": phase,
            "epochs_run": len(phase_history.get("loss", [])),
            "trainable_weights": len(model.trainable_weights),
            "learning_rate": base_rate,
        }
    )


def history_logger(path: str) -> Any:
    """keras.callbacks.CSVLogger (appending) that also closes a file under /gcs/.

    Keras takes a /gcs/ path (Vertex AI's Cloud Storage FUSE mount, where a step's outputs lie)
    for a remote one and opens it with tf.io.gfile, whose GFile has no `closed`: CSVLogger's
    on_train_end then raises AttributeError after the last epoch (Keras 3.15)."""
    import keras

    class HistoryLogger(keras.callbacks.CSVLogger):  # type: ignore[misc]
        def on_train_end(self, logs: Any = None) -> None:
            opened: Any = getattr(self, "csv_file", None)
            if opened is not None:
                opened.close()
            self.csv_file, self.writer = None, None

    return HistoryLogger(path, append=True)


def callbacks(setup: Setup, phase: str, phase_dir: Path) -> list[Any]:
    """Backup (resume), history CSV, progress events, the spec's early stopping / LR
    reduction, and TensorBoard."""
    import keras

    spec, monitor = setup.spec, setup.monitor
    stack: list[Any] = [
        keras.callbacks.BackupAndRestore(str(phase_dir / "backup")),
        history_logger(str(phase_dir / "history.csv")),
    ]
    if spec.early_stopping_patience:
        stack.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor,
                mode="max",
                patience=spec.early_stopping_patience,
                restore_best_weights=True,
            )
        )
    if spec.reduce_lr_patience:
        stack.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor, mode="max", factor=0.2, patience=spec.reduce_lr_patience
            )
        )
    if setup.events is not None:
        stack += progress_callbacks(setup.events, setup.epochs_done)
    if setup.tensorboard_dir is not None:
        board = setup.tensorboard_dir / (phase if setup.epochs_done else "")
        stack.append(keras.callbacks.TensorBoard(str(board), write_graph=True))
    return stack


def write_out(
    setup: Setup, seed: int, model_dir: Path, seconds: float, calibration: Calibration | None = None
) -> ModelCard:
    """The Model artifact: keras/ (model.keras + SavedModel), card, history."""
    spec, info, model, strategy = setup.spec, setup.info, setup.built.model, setup.strategy
    save_model(model, model_dir)
    card = ModelCard(
        framework="keras",
        name=spec.name,
        seed=seed,
        class_names=list(info.class_names),
        input_size=setup.built.input_size,
        channels=info.channels,
        preprocessing=setup.built.preprocessing,
        training={
            "spec": spec.model_dump(mode="json"),
            "epochs_run": len(setup.history.get("loss", [])),
            "phases": setup.phase_log,
            "seconds": round(seconds, 2),
            "train_examples": setup.sizes["train"],
            "validation_examples": setup.sizes["validation"],
            "fold": setup.fold.model_dump() if setup.fold is not None else None,
            "parameters": int(model.count_params()),
            "strategy": type(strategy).__name__,
            "replicas": int(strategy.num_replicas_in_sync),
            "precision": setup.policy,
            "pruned_at_epoch": setup.pruned_at,
            "calibration": calibration.record() if calibration is not None else None,
        },
        history=setup.history,
        dataset_fingerprint=info.fingerprint,
    )
    card.save(model_dir)
    write_json(model_dir / "history.json", setup.history)
    return card


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
