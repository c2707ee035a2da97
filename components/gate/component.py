from kfp import dsl

from components.common.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def gate(summary: dict) -> str:
    """Decides whether the best candidate is good enough to register.

    Args:
        summary: The compare step's summary (best run, gate minimum and verdict).

    Returns:
        "passed" or "failed"; on "failed" the pipeline skips registration and the log says
        by how much the best model missed the threshold.
    """
    verdict = summary["gate"]
    print(verdict["message"])
    return "passed" if verdict["passed"] else "failed"
