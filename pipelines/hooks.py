"""What a target tells the pipeline it builds: the hooks that pipelines/training.py, search.py
and registration.py call. The targets implement them; nothing here imports a target."""

from __future__ import annotations

from typing import Any, Literal, Protocol


class TaskHooks(Protocol):
    """What a target tells the pipeline: how each task runs, and where models are registered."""

    @property
    def parallelism(self) -> int:
        """Loop iterations at once; 0: as many as the backend allows."""
        ...

    @property
    def model_registry(self) -> Literal["folder", "vertex"]:
        """ "vertex": also upload the registered version to the Vertex AI Model Registry."""
        ...

    @property
    def runs_past_failed_tasks(self) -> bool:
        """Whether a task may ignore upstream failures and still feed the tasks after it."""
        ...

    def registry_root(self) -> str:
        """The folder registry's root where the register step runs."""
        ...

    def configure(self, task: Any, step: str, framework: str | None = None) -> None:
        """Set image, resources, retries and platform settings of one task."""
        ...

    def tracking(self) -> dict[str, Any]:
        """What the track steps record and where (a TrackingSpec); {}: no tracking."""
        ...

    def component_for(self, step: str, component: Any, framework: str | None = None) -> Any:
        """The component that runs `step` here; called like the step's own component."""
        ...

    def checkpoint_root(self) -> str:
        """Where training checkpoints live, outside any run's folder ("": the step's own)."""
        ...

    @property
    def data_snapshot(self) -> str:
        """Hash of the source's listing, taken before the run (the cache key of ingest)."""
        ...

    @property
    def fresh(self) -> bool:
        """Train from scratch instead of resuming from checkpoints."""
        ...
