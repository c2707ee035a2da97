"""The evaluate step: predict the test split, compute metrics, write predictions and a report.

The test split's predictions are the saved Model's: the ones the train step kept in the Model
artifact for this Dataset after the reloaded artifact reproduced them on a sample
(`components.models.prediction`: same fingerprint, same keys and labels in the same order), so
no framework is imported; otherwise the model is loaded from the artifact and predicts them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from components.common.files import write_json
from components.common.model_card import ModelCard
from components.common.results import DatasetInfo
from components.common.tfrecord import read_examples
from components.evaluate.metrics import classification_metrics, scalar_metrics
from components.evaluate.report import GALLERY_SIZE, GalleryItem, write_report
from components.models.loading import load_classifier, resolve_model_dir
from components.models.prediction import (
    ARTIFACT_TOLERANCE,
    SplitPredictions,
    load_stored,
    predict_split,
)

PREDICTIONS_FILE = "predictions.npz"
METRICS_FILE = "metrics.json"


def predictions_of_test_split(
    model_dir: str | Path,
    dataset_dir: str | Path,
    fingerprint: str,
    batch_size: int | None = None,
) -> SplitPredictions:
    """Keys, labels and probabilities of the test split: the ones the train step kept in the
    Model when they are of this Dataset's test split as it is (same keys and labels, in
    order), else predicted by the loaded model."""
    stored = load_stored(model_dir, fingerprint, "test")
    if stored is not None:
        keys, labels = [], []
        for example in read_examples(dataset_dir, "test"):
            keys.append(example["key"])
            labels.append(example["label"])
        if stored.keys.tolist() == keys and stored.labels.tolist() == labels:
            print(
                f"test split: the {len(keys)} predictions the train step kept for this Dataset; "
                f"the saved Model, reloaded, gave the same top-1 on {stored.artifact_sample} "
                f"of them (largest probability difference "
                f"{stored.artifact_max_difference:.2g}, tolerance {ARTIFACT_TOLERANCE:g})"
            )
            return SplitPredictions(stored.keys, stored.labels, stored.probabilities)
        print("test split: the predictions kept in the Model are of other images; predicting")
    return predict_split(load_classifier(model_dir), dataset_dir, "test", batch_size)


def worst_misclassified(predictions: SplitPredictions, limit: int = GALLERY_SIZE) -> list[int]:
    """Indices of the wrong predictions made with the highest confidence, most confident first."""
    probabilities = predictions.probabilities
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != predictions.labels)
    confidence = probabilities[wrong, predicted[wrong]]
    # stable sort: equal confidences keep the split's order
    order = np.argsort(-confidence, kind="stable")
    return wrong[order][:limit].tolist()


def gallery_items(
    predictions: SplitPredictions,
    class_names: list[str],
    dataset_dir: str | Path,
    split: str = "test",
    limit: int = GALLERY_SIZE,
) -> list[GalleryItem]:
    """The worst misclassified images of `split`, their bytes read from the Dataset by key."""
    chosen = worst_misclassified(predictions, limit)
    if not chosen:
        return []
    wanted = {str(predictions.keys[i]): i for i in chosen}
    images: dict[str, bytes] = {}
    for example in read_examples(dataset_dir, split):
        if example["key"] in wanted:
            images[example["key"]] = example["image"]
            if len(images) == len(wanted):
                break
    items = []
    for index in chosen:
        key = str(predictions.keys[index])
        row = predictions.probabilities[index]
        label = int(predictions.labels[index])
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
    metrics the compare step ranks by. The predictions are the ones the train step kept in the
    Model for this Dataset when it has them (then `batch_size` is not used), else the model's.
    """
    info = DatasetInfo.read(dataset_dir)
    class_names = list(info.class_names)
    if not info.num_examples.get("test", 0):
        raise ValueError(
            f"{dataset_dir} has no test images to evaluate on; set data.splits.test above 0"
        )
    model_dir = resolve_model_dir(model_dir)
    card = ModelCard.load(model_dir)
    if list(card.class_names) != class_names:
        raise ValueError(
            f"the model was trained on classes {card.class_names} but the dataset has {class_names}; "
            "evaluate a model trained on this Dataset"
        )
    predictions = predictions_of_test_split(model_dir, dataset_dir, info.fingerprint, batch_size)
    result = classification_metrics(predictions.labels, predictions.probabilities, class_names)
    predictions_dir = Path(predictions_dir)
    predictions_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        predictions_dir / PREDICTIONS_FILE,
        keys=predictions.keys,
        labels=predictions.labels,
        probabilities=predictions.probabilities,
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
