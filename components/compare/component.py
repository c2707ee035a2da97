from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Markdown, Output

from components.common.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def compare(
    metric: str,
    gate_min: float,
    reference: dict,
    table: Output[Markdown],
    report: Output[HTML],
    keras_results: list = [],
    transformers_results: list = [],
    searched_results: list = [],
    planned: list = [],
) -> NamedTuple("CompareOutputs", summary=dict, best_model_uri=str):
    """Compares every candidate x seed, picks the best and applies the quality gate.

    The candidate with the best mean of `metric` over its seeds wins; its best seed is the
    model that is gated and registered.

    Args:
        metric: Metric that ranks the candidates and that the gate checks.
        gate_min: Minimum value of `metric` the best candidate must reach to be registered
            (a maximum for lower-is-better metrics such as log_loss).
        reference: What the reference system reached ({metric, value}); may be empty.
        table: Markdown table of mean +- std over seeds per candidate and metric, with the
            best run and the gate verdict.
        report: The same as HTML, plus every run's metrics.
        keras_results: Results of the keras candidates' evaluate tasks.
        transformers_results: Results of the transformers candidates' evaluate tasks.
        searched_results: Results of the evaluate tasks of the searched candidates' winners.
        planned: The runs expected ({name, seed} per candidate x seed): those without a result
            (a task of theirs failed, compare.on_failure: continue) are listed as failed.

    Returns:
        summary: Table rows (mean and std per metric), best run, gate verdict (passed, min,
            missed_by, message), reference.
        best_model_uri: URI of the best run's Model artifact.
    """
    from collections import namedtuple

    from components.common.results import EvaluationResult, Reference
    from components.compare.run import compare as run_compare
    from components.compare.run import to_markdown, write_html

    # The one place the evaluate results are read: validation also turns kfp.local's float ints back.
    results = [
        EvaluationResult.model_validate(r)
        for r in [*keras_results, *transformers_results, *searched_results]
    ]
    summary = run_compare(
        results,
        metric,
        gate_min,
        Reference.model_validate(reference) if reference else None,
        planned=[(str(run["name"]), int(run["seed"])) for run in planned],
    )
    with open(table.path, "w") as handle:
        handle.write(to_markdown(summary))
    write_html(summary, report.path)
    outputs = namedtuple("CompareOutputs", ["summary", "best_model_uri"])
    return outputs(summary.to_output(), summary.best.model_uri)
