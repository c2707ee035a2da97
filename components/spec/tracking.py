"""What the tracking steps are told: where runs are recorded and the tags every run carries.

Ground floor: plain pydantic, no KFP. `pipelines/config/` builds it from the experiment's
`tracking:` section; the track steps validate it once at their `component.py` boundary.
"""

from __future__ import annotations

from components.spec.base import Strict


class TrackingSpec(Strict):
    """The tracking backends of a run and the tags of every run recorded there."""

    mlflow: str = ""  # MLflow tracking URI; "" records nothing in MLflow
    mlflow_experiment: str = ""  # MLflow experiment the runs go into
    vertex_experiment: str = ""  # Vertex AI Experiments name (vertex target only)
    project: str = ""  # Vertex AI project and region of that experiment
    location: str = ""
    experiment: str  # the experiment's name (pipelines/experiments/<name>.yaml)
    target: str  # local, vertex or kfp
    commit: str = ""  # git commit the pipeline was compiled from ("" outside a repository)

    @property
    def enabled(self) -> bool:
        return bool(self.mlflow or self.vertex_experiment)

    def tags(self, data_snapshot: str) -> dict[str, str]:
        """The tags every tracked run carries."""
        return {
            "experiment": self.experiment,
            "target": self.target,
            "commit": self.commit,
            "data_snapshot": data_snapshot,
        }
