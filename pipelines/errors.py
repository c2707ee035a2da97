"""Errors of the orchestration layer that the CLI turns into exit codes, and the import check
of the optional Vertex extra that raises one."""

from __future__ import annotations

from typing import Any

# A run in which candidate tasks failed while the others were compared (compare.on_failure:
# continue): the cluster counts it failed, and past the gate the best of the rest is registered.
EXIT_PARTIAL = 4


class SubmitError(RuntimeError):
    """The run could not be submitted; the message says what to fix."""


class PreflightError(ValueError):
    """The experiment is not ready for this target (exit code 2); nothing was submitted."""


def require_gcpc() -> Any:
    """google_cloud_pipeline_components, or a PreflightError that says how to install it."""
    try:
        import google_cloud_pipeline_components as gcpc
        from google_cloud_pipeline_components.types import artifact_types  # noqa: F401
        from google_cloud_pipeline_components.v1 import custom_job, endpoint, model  # noqa: F401
    except ImportError as exc:
        raise PreflightError(
            f"--target vertex needs the vertex extra ({exc.name} is missing): "
            "pip install -e '.[vertex]'"
        ) from None
    return gcpc
