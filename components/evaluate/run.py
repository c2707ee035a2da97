"""The evaluate step: predict the test split, compute metrics, write predictions and a report."""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from components.common.dataset import iterate_examples
from components.common.files import write_json
from components.common.progress import progress
from components.common.results import DatasetInfo, EvaluationResult, RunFailure
from components.evaluate.metrics import classification_metrics, scalar_metrics
from components.evaluate.report import GALLERY_SIZE, GalleryItem, write_report
from components.models.loading import Classifier, load_classifier
from components.spec import ON_FAILURE

PREDICTIONS_FILE = "predictions.npz"
METRICS_FILE = "metrics.json"
# Test-time batches hold about this many input pixels (256 images at 64x64): large batches keep
# every core busy, and big inputs get smaller batches so activations stay within memory.
BATCH_PIXELS = 256 * 64 * 64
MAX_BATCH = 512


def recorded(
    on_failure: str,
    model_dir: str | Path,
    metadata: dict[str, Any],
    evaluate_fn: Callable[..., dict[str, Any]],
    *args: Any,
    **kwargs: Any,
) -> tuple[RunFailure | None, dict[str, Any]]:
    """The failure a training recorded in `model_dir`; else `evaluate_fn(*args, **kwargs)`,
    whose exception becomes a RunFailure when `on_failure` is `continue`.

    No output file is written for a failure, so kfp.local (which counts a task whose artifact
    files are missing as not cached) evaluates again on the next run.
    """
    if on_failure not in ON_FAILURE:
        raise ValueError(f"on_failure is {on_failure!r}; use one of {', '.join(ON_FAILURE)}")
    earlier = RunFailure.read(model_dir)
    if earlier is not None:
        print(f"{earlier.name} seed {earlier.seed}: {earlier.step} failed, nothing to evaluate")
        return earlier, {}
    if on_failure == "stop":
        return None, evaluate_fn(*args, **kwargs)
    try:
        return None, evaluate_fn(*args, **kwargs)
    except Exception as exc:
        traceback.print_exc()
        name, seed = str(metadata.get("name", "")), int(metadata.get("seed") or 0)
        return RunFailure.of(name, seed, "evaluate", exc), {}


def failed_result(failure: RunFailure, framework: str, model_uri: str) -> dict[str, Any]:
    """The evaluate step's result for a failed run: its failure, no metrics."""
    return EvaluationResult(
        name=failure.name,
        seed=failure.seed,
        framework=framework,
        model_uri=model_uri,
        metrics={},
        failure=failure,
    ).to_output()


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


def worst_misclassified(predictions: dict[str, np.ndarray], limit: int = GALLERY_SIZE) -> list[int]:
    """Indices of the wrong predictions made with the highest confidence, most confident first."""
    probabilities = predictions["probabilities"]
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != predictions["labels"])
    confidence = probabilities[wrong, predicted[wrong]]
    # stable sort: equal confidences keep the split's order
    order = np.argsort(-confidence, kind="stable")
    return wrong[order][:limit].tolist()


def gallery_items(
    predictions: dict[str, np.ndarray],
    class_names: list[str],
    dataset_dir: str | Path,
    split: str = "test",
    limit: int = GALLERY_SIZE,
) -> list[GalleryItem]:
    """The worst misclassified images of `split`, their bytes read from the Dataset by key."""
    chosen = worst_misclassified(predictions, limit)
    if not chosen:
        return []
    wanted = {str(predictions["keys"][i]): i for i in chosen}
    images: dict[str, bytes] = {}
    for example in iterate_examples(dataset_dir, split):
        if example["key"] in wanted:
            images[example["key"]] = example["image"]
            if len(images) == len(wanted):
                break
    items = []
    for index in chosen:
        key = str(predictions["keys"][index])
        row = predictions["probabilities"][index]
        label = int(predictions["labels"][index])
        predicted = int(row.argmax())
        items.append(
            GalleryItem(
                key=key,
                true=class_names[label],
                predicted=class_names[predicted],
                confidence=float(row[predicted]),
                true_probability=float(row[label]),
                image=images.get(key),
            )
        )
    return items


def evaluate(
    model_dir: str | Path,
    dataset_dir: str | Path,
    predictions_dir: str | Path,
    report_html: str | Path,
    reference: dict[str, Any] | None = None,
    batch_size: int | None = None,
    gallery_size: int = GALLERY_SIZE,
) -> dict[str, Any]:
    """Evaluate a Model on the Dataset's test split; return the full metrics result.

    Writes `predictions.npz` (keys, labels, probabilities, class_names) and `metrics.json` into
    `predictions_dir`, and the HTML report to `report_html`. The result's `scalars` are the
    metrics the compare step ranks by.
    """
    info = DatasetInfo.read(dataset_dir)
    class_names = list(info.class_names)
    if not info.num_examples.get("test", 0):
        raise ValueError(
            f"{dataset_dir} has no test images to evaluate on; set data.splits.test above 0"
        )
    classifier = load_classifier(model_dir)
    card = classifier.card
    if list(card.class_names) != class_names:
        raise ValueError(
            f"the model was trained on classes {card.class_names} but the dataset has {class_names}; "
            "evaluate a model trained on this Dataset"
        )
    predictions = predict_split(classifier, dataset_dir, "test", batch_size)
    result = classification_metrics(
        predictions["labels"], predictions["probabilities"], class_names
    )
    predictions_dir = Path(predictions_dir)
    predictions_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        predictions_dir / PREDICTIONS_FILE,
        keys=predictions["keys"],
        labels=predictions["labels"],
        probabilities=predictions["probabilities"],
        class_names=np.asarray(class_names),
    )
    write_json(predictions_dir / METRICS_FILE, result)
    gallery = gallery_items(predictions, class_names, dataset_dir, "test", gallery_size)
    write_report(
        result,
        class_names,
        f"Evaluation: {card.name} (seed {card.seed})",
        report_html,
        reference,
        gallery=gallery,
        subtitle=f"{card.framework} model, {info.source}, test split",
    )
    result["scalars"] = scalar_metrics(result)
    return result
