"""Where a pipeline runs: `local` (kfp.local), `vertex` (Vertex AI Pipelines), `kfp` (KFP standalone).

A target configures tasks (images, resources, retries, platform settings) through the hooks
`pipelines.training.TaskHooks` asks for, compiles and submits; it builds no part of the DAG.
May import `pipelines.training`, `pipelines.config`, `pipelines.errors`, `components/` and kfp;
the pipeline never imports a target.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.config import Experiment
    from pipelines.targets.base import RunOptions, Target

TARGETS = ("local", "vertex", "kfp")


def get_target(name: str, experiment: Experiment, options: RunOptions | None = None) -> Target:
    if name == "local":
        from pipelines.targets.local import LocalTarget

        return LocalTarget(experiment, options)
    if name == "vertex":
        from pipelines.targets.vertex import VertexTarget

        return VertexTarget(experiment, options)
    if name == "kfp":
        from pipelines.targets.kfp import KfpTarget

        return KfpTarget(experiment, options)
    raise ValueError(f"unknown target '{name}'; use one of {', '.join(TARGETS)}")
