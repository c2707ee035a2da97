from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Model, Output

from components.common.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def export(
    model: Input[Model],
    dataset: Input[Dataset],
    config: dict,
    exports: Output[Model],
    report: Output[HTML],
) -> dict:
    """Converts the gated best model to deployable formats and measures what each one costs.

    Each format is run with its own runtime (TensorFlow, ONNX Runtime, LiteRT) on the whole test
    split and compared with the original: file size, test accuracy and its difference, top-1
    agreement, latency at batch 1 (p50, p90) and throughput at batch 32. A format that loses
    more accuracy than its max_accuracy_drop is reported failed and left out.

    Args:
        model: The best candidate's Model artifact.
        dataset: The ingested Dataset (test split measured, train split calibrates int8).
        config: The experiment's export section (formats, max_accuracy_drop,
            calibration_images).
        exports: The formats that passed (model.onnx, model_int8.tflite, saved_model/, ...),
            export.json (every format's figures and verdict) and report.html.
        report: HTML table and size/accuracy/latency chart of every format.

    Returns:
        The export record: per format its figures and verdict; `passed` and `failed` names.
    """
    from components.export.run import export_model
    from components.spec import ExportConfig

    return export_model(
        model.path, dataset.path, exports.path, ExportConfig.model_validate(config), report.path
    )
