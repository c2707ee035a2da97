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
    batch_size: int = 0,
    gallery_size: int = 24,
) -> dict:
    """Evaluates a trained model on the test split and explains its errors.

    Args:
        dataset: The ingested Dataset.
        model: The trained Model (keras or transformers).
        reference: What the reference system reached ({metric, value}); may be empty.
        predictions: predictions.npz (keys, labels, probabilities, class_names) and metrics.json
            (every metric, per-class results, confusion matrix, calibration bins).
        metrics: Scalar test metrics: accuracy, balanced accuracy, macro and weighted
            precision/recall/F1, log loss, expected calibration error; top-5 accuracy above 10
            classes; ROC AUC and PR AUC for binary tasks.
        confusion: Confusion matrix with class names; ROC curve for binary tasks.
        report: HTML report: metrics vs reference, confusion heat map, most-confused class pairs,
            gallery of the most confidently misclassified images, reliability diagram, per-class
            table.
        batch_size: Test-time batch size; 0 picks one from the model's input size.
        gallery_size: How many misclassified images the report shows.

    Returns:
        The candidate's name, seed, framework, model URI, scalar test metrics and, for the
        winner of a search, the search's outcome (best trial and its parameters).
    """
    import json

    from components.common.model_card import ModelCard
    from components.common.process import skip_collection_at_exit
    from components.common.results import EvaluationResult
    from components.evaluate.metrics import downsample_curve
    from components.evaluate.run import evaluate as run_evaluate

    skip_collection_at_exit()  # TensorFlow / PyTorch processes otherwise linger seconds at exit

    result = run_evaluate(
        model.path,
        dataset.path,
        predictions.path,
        report.path,
        reference or None,
        batch_size=batch_size or None,
        gallery_size=gallery_size,
    )
    for name, value in result["scalars"].items():
        metrics.log_metric(name, round(value, 6))
    class_names = list(result["per_class"])
    confusion.log_confusion_matrix(class_names, result["confusion_matrix"])
    if "roc_curve" in result:
        roc = downsample_curve(result["roc_curve"])
        confusion.log_roc_curve(roc["fpr"], roc["tpr"], roc["thresholds"])
    # kfp.local gives Metrics no file unless one is written; caching needs it.
    with open(metrics.path, "w") as handle:
        json.dump(result["scalars"], handle)
    with open(confusion.path, "w") as handle:
        json.dump(confusion.metadata, handle, allow_nan=False)
    card = ModelCard.load(model.path)
    return EvaluationResult(
        name=card.name,
        seed=card.seed,
        framework=card.framework,
        model_uri=model.uri,
        metrics=result["scalars"],
        # A retrain of a search's winner carries what the search found.
        search=card.training.get("search"),
    ).to_output()
