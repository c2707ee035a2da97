"""The `kfp` target: KFP standalone (e.g. the kind cluster of infra/kind) through `kfp.Client`.

Compile: step images, the Kubernetes GPU resource name and, through kfp-kubernetes, the image pull
policy, node selectors, tolerations and PVC mounts. With `resources.kfp.replica_count` above 1 a
transformers train step starts a Kubeflow Trainer TrainJob instead of training in its pod: the
compile carries the TrainJob's settings (`TRAINJOB_ENV`, components/train/trainjob.py) and the
volume the step shares with it. kfp-kubernetes writes those into a platform
spec (a second YAML document of the package); only this target calls it, because Vertex rejects
such settings.

Submit: upload the package as a pipeline (a new version of it when the pipeline exists), create
or reuse the KFP experiment of the same name, start a run with the pipeline's parameters and the
pipeline root, print the UI link; with --wait, poll the run and print every state change.

One module per concern: `cluster` (namespace, mounts, GPU nodes), `api` (the health check and
kfp.Client's errors), `submit` (pipeline, version, experiment, run; --wait), `target` (the task
hooks and the run). May import `pipelines.config`, `pipelines.errors`, `pipelines.targets.base`,
`components/` and kfp.
"""

from pipelines.targets.kfp.target import KfpTarget

__all__ = ["KfpTarget"]
