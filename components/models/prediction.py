"""A Model's predictions of a Dataset split, and the copy of them the train step keeps.

`predict_split` is how evaluation predicts: tf.data decodes and resizes the split's images,
the `Classifier` scores them in batches. The keras train step runs it on the model it trained,
still in memory, and keeps the test split's result in the Model artifact (`stored_predictions.npz`: keys, labels,
probabilities, the Dataset's fingerprint and the split), so the evaluate step can score the
model without importing a framework. `load_stored` gives them back only for the Dataset they
were made of; evaluation checks the keys and labels against the split it reads. A transformers
training keeps none: its processes never import TensorFlow, so the evaluate step predicts.
"""

from __future__ import annotations

import math
import os
import zipfile
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
) -> dict[str, np.ndarray]:
    """Keys, labels and class probabilities of every image of `split`, in batches.

    tf.data decodes and resizes in parallel on every core while the model predicts.
    """
    from components.common.tfdata import make_dataset

    if isinstance(classifier, (str, Path)):
        classifier = load_classifier(classifier)
    card = classifier.card
    batch_size = batch_size or default_batch_size(card.input_size)
    total = DatasetInfo.read(dataset_dir).num_examples.get(split, 0)
    dataset = make_dataset(
        dataset_dir,
        split,
        (int(card.input_size[0]), int(card.input_size[1])),
        card.channels,
        batch_size,
        with_keys=True,
        cache=False,
    )
    keys: list[str] = []
    labels, probabilities = [], []
    batches = max(math.ceil(total / batch_size), 1)
    for images, batch_labels, batch_keys in progress(dataset, batches, f"predict {split}"):
        probabilities.append(classifier.predict(images.numpy()))
        labels.append(batch_labels.numpy())
        keys.extend(k.decode() for k in batch_keys.numpy())
    if not keys:
        raise ValueError(f"the {split} split of {dataset_dir} has no images to predict")
    return {
        "keys": np.asarray(keys),
        "labels": np.concatenate(labels).astype(np.int64),
        "probabilities": np.concatenate(probabilities).astype(np.float32),
    }


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
    partial = _partial(path)
    with partial.open("wb") as handle:
        np.savez(
            handle,
            keys=predictions["keys"],
            labels=predictions["labels"],
            probabilities=predictions["probabilities"],
            fingerprint=np.asarray(info.fingerprint),
            split=np.asarray(split),
        )
    os.replace(partial, path)
    return path


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


def keep_test_predictions(
    classifier: Classifier, dataset_dir: str | Path, model_dir: str | Path
) -> Path | None:
    """`store_predictions` of the test split for the train step: a failure to predict costs
    the Model only its kept predictions (evaluation then predicts), not the training."""
    try:
        return store_predictions(classifier, dataset_dir, model_dir, "test")
    except Exception as exc:
        path = Path(model_dir) / STORED_PREDICTIONS_FILE
        path.unlink(missing_ok=True)
        _partial(path).unlink(missing_ok=True)
        print(
            f"the test split's predictions are not kept ({type(exc).__name__}: {exc}); "
            "the evaluate step predicts them"
        )
        return None


def load_stored(
    model_dir: str | Path, fingerprint: str, split: str = "test"
) -> dict[str, np.ndarray] | None:
    """The predictions the train step kept of `split` of the Dataset with `fingerprint`; None
    when the Model has none (an older Model, a search trial), they are of another Dataset or
    split, or the file cannot be read."""
    path = Path(model_dir) / STORED_PREDICTIONS_FILE
    if not path.is_file() or not fingerprint:
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            if str(stored["fingerprint"]) != fingerprint or str(stored["split"]) != split:
                return None
            predictions = {
                "keys": stored["keys"].astype(str),
                "labels": stored["labels"].astype(np.int64),
                "probabilities": stored["probabilities"].astype(np.float32),
            }
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    probabilities = predictions["probabilities"]
    if probabilities.ndim != 2 or len(probabilities) != len(predictions["keys"]):
        return None
    if len(predictions["labels"]) != len(predictions["keys"]):
        return None
    return predictions
