"""The `vertex` target: Vertex AI Pipelines.

One module per concern: `images` (which image each step runs in, pins), `hardware`
(accelerators, the custom job), `preflight` (checks without the network), `submit` (the
PipelineJob and --wait), `registry` (the bucket's folder registry, read before submitting),
`target` (the task hooks and the run). The registration subgraph is
wiring of the pipeline (`pipelines/registration.py`), not of this target. May import
`pipelines.config`, `pipelines.errors`, `pipelines.targets.base`, kfp and GCPC.

Compile: every step runs in its image from the experiment (a registry path, by tag or digest).
Training is a plain pipeline task (CPU, memory, GPUs through `set_accelerator_type`) unless it
needs what only a Vertex AI custom job expresses: a TPU slice (with its topology), spot or
flex-start scheduling, a reservation, or a TensorBoard. Then it goes through
`create_custom_training_job_from_component`, whose worker pool spec gets the `tpu_topology` that
helper has no argument for. Retries apply to the training task either way, so a preempted spot or
TPU step starts again and resumes from its checkpoints.

Registration, wired by `pipelines/registration.py`: after the gate the best model is copied into
the folder registry in the bucket (as on every target) and uploaded to the Vertex AI Model
Registry (GCPC `ModelUploadOp`), as a new version of the model of the same name when there is
one; with `register.deploy` it is deployed to an endpoint that is created or reused. GCPC's launchers run in our own images (they install the
`vertex` extra), so a run pulls only from the experiment's registry.

Submit: a preflight that needs no network (project, region, bucket, service account, registry
images, accelerator for the region, ...; exit code 2 and nothing submitted otherwise), then
`aiplatform.PipelineJob` with labels, parameters, caching, service account, network, encryption
key and Vertex AI Experiments; `--wait` streams task states until the run ends.
"""

from pipelines.targets.vertex.target import VertexTarget

__all__ = ["VertexTarget"]
