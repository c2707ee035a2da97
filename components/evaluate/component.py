from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components.common.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate(
    dataset: Input[Dataset],
    model: Input[Model],
    reference: dict,
    predictions: Output[Dataset],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
    report: Output[HTML],
) -> dict:
    """Evaluates a trained model on the test split.

    Args:
        dataset: The ingested Dataset.
        model: The trained Model.
        reference: What the reference system reached ({metric, value}); may be empty.
        predictions: predictions.npz (keys, labels, probabilities) and metrics.json.
        metrics: Scalar test metrics.
        confusion: Confusion matrix with class names.
        report: HTML report: metrics vs reference, confusion matrix, per-class table.

    Returns:
        The candidate's name, seed, framework, model URI and scalar test metrics.
    """
    import json

    from components.common.model_card import ModelCard
    from components.evaluate.run import evaluate as run_evaluate

    card = ModelCard.load(model.path)
    result = run_evaluate(model.path, dataset.path, predictions.path, report.path, reference or None)
    for name, value in result["scalars"].items():
        metrics.log_metric(name, round(value, 6))
    confusion.log_confusion_matrix(card.class_names, result["confusion_matrix"])
    # kfp.local gives Metrics no file unless one is written; caching needs it.
    with open(metrics.path, "w") as handle:
        json.dump(result["scalars"], handle)
    with open(confusion.path, "w") as handle:
        json.dump(confusion.metadata, handle)
    return {
        "name": card.name,
        "seed": card.seed,
        "framework": card.framework,
        "model_uri": model.uri,
        "metrics": result["scalars"],
    }
