"""Training progress as events (components.common.progress) and what a finished training says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components.common.progress import EpochEvents, events_enabled


def keras_progress_callback(events: EpochEvents, first_epoch: int) -> Any:
    """A Keras callback reporting batches and epochs of one `fit` whose epoch 0 is
    `first_epoch` of the whole training (phases continue the count)."""
    import keras

    class ProgressEvents(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            events.batch(batch + 1)

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            events.epoch = first_epoch + epoch
            events.epoch_end(dict(logs or {}))

    return ProgressEvents()


def progress_callbacks(events: EpochEvents, first_epoch: int) -> list[Any]:
    return [keras_progress_callback(events, first_epoch)] if events_enabled() else []


def training_outcome(
    history: dict[str, list[float]], planned_epochs: int, patience: int | None
) -> dict[str, Any]:
    """The monitored metric's best epoch (1-based, first of ties, as early stopping keeps it)
    and whether early stopping ended the training before `planned_epochs`."""
    monitor = "val_accuracy" if history.get("val_accuracy") else "accuracy"
    values = history.get(monitor, [])
    epochs_run = len(history.get("loss", values))
    outcome: dict[str, Any] = {
        "monitor": monitor,
        "planned_epochs": planned_epochs,
        "epochs_run": epochs_run,
        "stopped_early": bool(patience) and epochs_run < planned_epochs,
        "best_epoch": None,
        "best_value": None,
    }
    if values:
        best = max(range(len(values)), key=lambda i: (values[i], -i))
        outcome.update(best_epoch=best + 1, best_value=float(values[best]))
    return outcome


class EpochScalars:
    """Per-epoch scalars as TensorBoard event files laid out as Keras's TensorBoard callback
    lays them out (`train/` and `validation/`, tags `epoch_<metric>`), so both frameworks'
    runs line up in one TensorBoard. tensorboardX writes them without TensorFlow."""

    def __init__(self, log_dir: str | Path) -> None:
        from tensorboardX import SummaryWriter

        self.writers = {
            "train": SummaryWriter(str(Path(log_dir) / "train")),
            "validation": SummaryWriter(str(Path(log_dir) / "validation")),
        }

    def write(self, epoch: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            split = "validation" if name.startswith("val_") else "train"
            tag = "epoch_" + name.removeprefix("val_")
            self.writers[split].add_scalar(tag, float(value), epoch)
        for writer in self.writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
