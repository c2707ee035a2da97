from kfp import dsl

from components.common.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def gate(summary: dict) -> str:
    """Decides whether the best candidate is good enough to register.

    Args:
        summary: The compare step's summary (best run, gate threshold and verdict).

    Returns:
        "passed" or "failed"; on "failed" the pipeline skips registration and the log says
        by how much the best model missed the threshold.
    """
    from components.common.results import CompareSummary
    from components.gate.run import decision

    compared = CompareSummary.model_validate(summary)
    print(compared.gate.message)
    return decision(compared)
