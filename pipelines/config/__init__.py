"""The experiment: one typed, validated config per run, loaded from a YAML file.

The package's modules, each one concern: `schema` (the `Experiment` and its sections),
`resources` (where and on what each target trains), `accelerators` (the one table of the
accelerators, read by validation and by the vertex target), `overrides` (`--set`), `errors`
(validation errors in the experiment's words), `loading` (a name or path -> `Experiment`) and
`checks` (what the CLI checks before compiling, beyond validation). Other modules import the
names below from `pipelines.config`.
"""

from pipelines.config.accelerators import (
    ACCELERATORS_BY_REGION,
    G2_GPUS,
    GPU_TYPES,
    MACHINE_FAMILIES,
    TPU_TYPES,
)
from pipelines.config.checks import check_metrics, weights_problems
from pipelines.config.loading import (
    EXPERIMENTS_DIR,
    list_experiments,
    load_experiment,
    resolve_experiment_path,
)
from pipelines.config.overrides import parse_override
from pipelines.config.resources import (
    KFP_DEFAULT_PIPELINE_ROOT,
    KIND_REGISTRY_PVC,
    KfpResources,
    VertexResources,
)
from pipelines.config.schema import Experiment, Images
from pipelines.experiment_file import ConfigError

__all__ = [
    "ACCELERATORS_BY_REGION",
    "EXPERIMENTS_DIR",
    "G2_GPUS",
    "GPU_TYPES",
    "KFP_DEFAULT_PIPELINE_ROOT",
    "KIND_REGISTRY_PVC",
    "MACHINE_FAMILIES",
    "TPU_TYPES",
    "ConfigError",
    "Experiment",
    "Images",
    "KfpResources",
    "VertexResources",
    "check_metrics",
    "list_experiments",
    "load_experiment",
    "parse_override",
    "resolve_experiment_path",
    "weights_problems",
]
