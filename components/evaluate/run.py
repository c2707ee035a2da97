"""The evaluate step: predict the test split, compute metrics, write predictions and a report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from components.common.dataset import read_info
from components.common.files import write_json
from components.common.model_card import ModelCard
from components.evaluate.loaders import load_classifier
from components.evaluate.metrics import classification_metrics, scalar_metrics
from components.evaluate.report import write_report
from components.train.input import make_dataset


def predict_split(model_dir: str | Path, dataset_dir: str | Path, split: str = "test", batch_size: int = 256) -> dict[str, np.ndarray]:
    classifier = load_classifier(model_dir)
    card = classifier.card
    dataset = make_dataset(dataset_dir, split, tuple(card.input_size), card.channels, batch_size, with_keys=True, cache=False)
    keys, labels, probabilities = [], [], []
    for images, batch_labels, batch_keys in dataset:
        probabilities.append(classifier.predict(images.numpy()))
        labels.append(batch_labels.numpy())
        keys.extend(k.decode() for k in batch_keys.numpy())
    return {
        "keys": np.asarray(keys),
        "labels": np.concatenate(labels).astype(np.int64),
        "probabilities": np.concatenate(probabilities).astype(np.float32),
    }


def evaluate(
    model_dir: str | Path,
    dataset_dir: str | Path,
    predictions_dir: str | Path,
    report_html: str | Path,
    reference: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate a Model on the Dataset's test split; return the full metrics result."""
    info = read_info(dataset_dir)
    class_names = list(info["class_names"])
    if not int(info["num_examples"]["test"]):
        raise ValueError(f"{dataset_dir} has no test images to evaluate on; set data.splits.test above 0")
    card = ModelCard.load(model_dir)
    if list(card.class_names) != class_names:
        raise ValueError(f"the model was trained on classes {card.class_names} but the dataset has {class_names}")
    predictions = predict_split(model_dir, dataset_dir)
    result = classification_metrics(predictions["labels"], predictions["probabilities"], class_names)
    predictions_dir = Path(predictions_dir)
    predictions_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(predictions_dir / "predictions.npz", class_names=np.asarray(class_names), **predictions)
    write_json(predictions_dir / "metrics.json", result)
    write_report(result, class_names, f"Evaluation: {card.name} (seed {card.seed})", report_html, reference)
    result["scalars"] = scalar_metrics(result)
    return result
