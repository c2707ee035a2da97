"""A Model's predictions of a Dataset split, and the copy of them the train step keeps.

`predict_split` is how evaluation predicts, and how the export step measures every format:
tf.data decodes and resizes the split's images, the `Classifier` scores them in batches. The keras train step runs it on the model it trained,
still in memory, and keeps the test split's result in the Model artifact (`stored_predictions.npz`: keys, labels,
probabilities, the Dataset's fingerprint and the split), so the evaluate step can score the
model without importing a framework. They are kept only after the saved artifact, loaded back
exactly as evaluation, the registry, `predict` and the server load it, has predicted a sample
of the same images with the same top-1 and probabilities within ARTIFACT_TOLERANCE; a model
that saves or reloads wrong fails its training there, with the numbers (`check_artifact`).
`load_stored` gives them back only for the Dataset they were made of and only with that check
recorded; evaluation checks the keys and labels against the split it reads. A transformers
training keeps none: its processes never import TensorFlow, so the evaluate step predicts.
"""

from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.common.progress import progress
from components.common.results import DatasetInfo
from components.models.artifact import Classifier
from components.models.loading import load_classifier

STORED_PREDICTIONS_FILE = "stored_predictions.npz"
# Test-time batches hold about this many input pixels (256 images at 64x64): large batches keep
# every core busy, and big inputs get smaller batches so activations stay within memory.
BATCH_PIXELS = 256 * 64 * 64
MAX_BATCH = 512
# The reloaded artifact predicts the first ARTIFACT_SAMPLE images of the split; each class
# probability may differ from the trained model's by at most ARTIFACT_TOLERANCE (float32 kernels
# of another build or device differ by far less; a lost layer by far more).
ARTIFACT_SAMPLE = 64
ARTIFACT_TOLERANCE = 1e-3


@dataclass(frozen=True)
class SplitPredictions:
    """A classifier's answers on a split's images, in the split's order."""

    keys: np.ndarray  # the images' keys (str)
    labels: np.ndarray  # their true classes (int64)
    probabilities: np.ndarray  # (images, classes) float32

    def __len__(self) -> int:
        return len(self.keys)


@dataclass(frozen=True)
class StoredPredictions(SplitPredictions):
    """The test predictions a Model keeps, with the check of the saved Model against them."""

    artifact_sample: int  # how many images the reloaded Model predicted
    artifact_max_difference: float  # its largest probability difference


class ArtifactMismatchError(RuntimeError):
    """The saved Model does not predict as the model that was trained."""


def default_batch_size(input_size: tuple[int, int] | list[int]) -> int:
    """A power of two between 8 and MAX_BATCH, smaller for larger inputs."""
    pixels = int(input_size[0]) * int(input_size[1])
    size = 2 ** int(math.log2(max(BATCH_PIXELS // max(pixels, 1), 1)))
    return int(min(max(size, 8), MAX_BATCH))


def predict_split(
    classifier: Classifier | str | Path,
    dataset_dir: str | Path,
    split: str = "test",
    batch_size: int | None = None,
    limit: int | None = None,
    quiet: bool = False,
) -> SplitPredictions:
    """Keys, labels and class probabilities of every image of `split` (the first `limit`
    ones), in batches; `quiet` leaves out the progress lines.

    `classifier` is anything with the `Classifier` interface (a native model, an exported
    format's runtime) or a Model folder to load. tf.data decodes and resizes in parallel on
    every core while the model predicts.
    """
    from components.common.tfdata import make_dataset

    if isinstance(classifier, (str, Path)):
        classifier = load_classifier(classifier)
    card = classifier.card
    batch_size = batch_size or default_batch_size(card.input_size)
    total = DatasetInfo.read(dataset_dir).num_examples.get(split, 0)
    if limit is not None:
        total = min(total, limit)
        batch_size = min(batch_size, max(limit, 1))
    dataset = make_dataset(
        dataset_dir,
        split,
        (int(card.input_size[0]), int(card.input_size[1])),
        card.channels,
        batch_size,
        with_keys=True,
        cache=False,
    )
    if limit is not None:
        dataset = dataset.take(math.ceil(limit / batch_size))
    keys: list[str] = []
    labels, probabilities = [], []
    batches = max(math.ceil(total / batch_size), 1)
    shown = dataset if quiet else progress(dataset, batches, f"predict {split}")
    for images, batch_labels, batch_keys in shown:
        probabilities.append(classifier.predict(images.numpy()))
        labels.append(batch_labels.numpy())
        keys.extend(k.decode() for k in batch_keys.numpy())
    if not keys:
        raise ValueError(f"the {split} split of {dataset_dir} has no images to predict")
    end = limit if limit is not None else len(keys)
    return SplitPredictions(
        keys=np.asarray(keys[:end]),
        labels=np.concatenate(labels).astype(np.int64)[:end],
        probabilities=np.concatenate(probabilities).astype(np.float32)[:end],
    )


def check_artifact(
    predictions: SplitPredictions,
    model_dir: str | Path,
    dataset_dir: str | Path,
    split: str = "test",
    sample: int = ARTIFACT_SAMPLE,
    tolerance: float = ARTIFACT_TOLERANCE,
) -> dict[str, float]:
    """Load the Model saved in `model_dir` as every reader loads it, predict the first `sample`
    images of `split` and compare with `predictions` (the trained model's of the whole split).
    Returns {"sample": n, "max_difference": largest probability difference}; raises
    ArtifactMismatchError with the numbers when a top-1 differs (beyond a tie within the
    tolerance) or a probability differs by more than `tolerance`."""
    reloaded = predict_split(load_classifier(model_dir), dataset_dir, split, limit=sample)
    n = len(reloaded)
    if reloaded.keys.tolist() != predictions.keys[:n].tolist():
        raise ArtifactMismatchError(
            f"the saved Model read the {split} split's images in another order than the trained "
            "model; the split changed while the step ran"
        )
    held = predictions.probabilities[:n]
    loaded = reloaded.probabilities
    if held.shape != loaded.shape:
        raise ArtifactMismatchError(
            f"the saved Model in {model_dir} predicts {loaded.shape[1]} classes and the trained "
            f"model {held.shape[1]}: the artifact does not hold the model that was trained"
        )
    difference = float(np.abs(held - loaded).max())
    ordered = np.sort(held, axis=1)
    clear = ordered[:, -1] - ordered[:, -2] > 2 * tolerance  # not a tie within the tolerance
    flipped = np.flatnonzero(clear & (held.argmax(axis=1) != loaded.argmax(axis=1)))
    if len(flipped) or difference > tolerance:
        shown = ", ".join(str(k) for k in reloaded.keys[flipped[:5]])
        raise ArtifactMismatchError(
            f"the saved Model does not predict as the trained model: on the first {n} {split} "
            f"images, reloaded from {model_dir}, its top-1 differs on {len(flipped)}"
            + (f" ({shown}{', ...' if len(flipped) > 5 else ''})" if len(flipped) else "")
            + f" and its probabilities by up to {difference:.3g} (tolerance {tolerance:g}). "
            "What is registered, exported and served would not be the model that was "
            "evaluated: check what saving leaves out (a custom layer without "
            "get_config/registration, a preprocessing step outside the model, a dtype policy)"
        )
    return {"sample": float(n), "max_difference": difference}


def store_predictions(
    classifier: Classifier, dataset_dir: str | Path, model_dir: str | Path, split: str = "test"
) -> Path | None:
    """Predict `split` with `classifier` (as evaluation would) and keep the result in the Model
    folder, tagged with the Dataset's fingerprint. Writes nothing when the split is empty.
    Whatever an earlier training kept there is removed first."""
    path = Path(model_dir) / STORED_PREDICTIONS_FILE
    path.unlink(missing_ok=True)
    info = DatasetInfo.read(dataset_dir)
    if not info.num_examples.get(split, 0):
        return None
    predictions = predict_split(classifier, dataset_dir, split)
    checked = check_artifact(predictions, model_dir, dataset_dir, split)
    partial = _partial(path)
    with partial.open("wb") as handle:
        np.savez(
            handle,
            keys=predictions.keys,
            labels=predictions.labels,
            probabilities=predictions.probabilities,
            fingerprint=np.asarray(info.fingerprint),
            split=np.asarray(split),
            artifact_sample=np.asarray(int(checked["sample"])),
            artifact_max_difference=np.asarray(checked["max_difference"]),
            artifact_tolerance=np.asarray(ARTIFACT_TOLERANCE),
        )
    os.replace(partial, path)
    return path


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


def keep_test_predictions(
    classifier: Classifier, dataset_dir: str | Path, model_dir: str | Path
) -> Path | None:
    """`store_predictions` of the test split for the train step: a failure to predict costs
    the Model only its kept predictions (evaluation then predicts), not the training; a saved
    Model that does not predict as the trained one (ArtifactMismatchError) fails it."""
    path = Path(model_dir) / STORED_PREDICTIONS_FILE
    try:
        return store_predictions(classifier, dataset_dir, model_dir, "test")
    except ArtifactMismatchError:
        _partial(path).unlink(missing_ok=True)
        raise
    except Exception as exc:
        path.unlink(missing_ok=True)
        _partial(path).unlink(missing_ok=True)
        print(
            f"the test split's predictions are not kept ({type(exc).__name__}: {exc}); "
            "the evaluate step predicts them"
        )
        return None


def load_stored(
    model_dir: str | Path, fingerprint: str, split: str = "test"
) -> StoredPredictions | None:
    """The predictions the train step kept of `split` of the Dataset with `fingerprint`, with
    the check of the saved Model; None when the Model has none (an older Model, a search
    trial), they are of another Dataset or split, carry no passed artifact check, or the file
    cannot be read."""
    path = Path(model_dir) / STORED_PREDICTIONS_FILE
    if not path.is_file() or not fingerprint:
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            if str(stored["fingerprint"]) != fingerprint or str(stored["split"]) != split:
                return None
            if "artifact_sample" not in stored.files:
                return None  # kept before the saved Model was checked against them
            predictions = StoredPredictions(
                keys=stored["keys"].astype(str),
                labels=stored["labels"].astype(np.int64),
                probabilities=stored["probabilities"].astype(np.float32),
                artifact_sample=int(stored["artifact_sample"]),
                artifact_max_difference=float(stored["artifact_max_difference"]),
            )
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    probabilities = predictions.probabilities
    if probabilities.ndim != 2 or len(probabilities) != len(predictions.keys):
        return None
    if len(predictions.labels) != len(predictions.keys):
        return None
    return predictions
