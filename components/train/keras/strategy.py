"""Where Keras trains: the tf.distribute strategy and the mixed-precision policy.

One machine only: its GPUs with MirroredStrategy, or a TPU slice. Several machines would need
MultiWorkerMirroredStrategy, under which Keras 3 on TensorFlow does not train (README, "Design
notes"; `benchmarks/scaling.py` shows it), so a multi-worker cluster is refused with the reason.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from components.spec import ModelSpec
from components.train.cluster import nodes_from_environment


class MultiWorkerError(RuntimeError):
    """Keras asked to train on several machines, which it cannot here."""


MULTI_WORKER_REASON = (
    "Keras 3 on TensorFlow does not train under tf.distribute.MultiWorkerMirroredStrategy: "
    "model.fit fails with 'Attempt to convert a value (PerReplica:...)' "
    "(keras-team/keras#20585, tensorflow/tensorflow#72388). Train keras candidates on one "
    "machine (all its GPUs: MirroredStrategy) or use a transformers candidate on several"
)


def cluster_workers(env: Mapping[str, str] | None = None) -> int:
    """The machines this training is one of: TF_CONFIG's chief and workers, else Vertex AI's
    CLUSTER_SPEC (worker pools 0 and 1), else 1."""
    env = os.environ if env is None else env
    if env.get("TF_CONFIG"):
        cluster = json.loads(env["TF_CONFIG"]).get("cluster", {})
        return max(len(cluster.get("chief", [])) + len(cluster.get("worker", [])), 1)
    return nodes_from_environment(env).count


def choose_strategy() -> Any:
    """TPUStrategy on a TPU VM, Mirrored for several local GPUs, else the default (one device)
    strategy. Several machines are refused (`MULTI_WORKER_REASON`); the experiment's config
    check refuses them before anything runs."""
    import tensorflow as tf

    if os.environ.get("TPU_NAME") or os.environ.get("TPU_WORKER_ID") is not None:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=os.environ.get("TPU_NAME", "local")
        )
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    workers = cluster_workers()
    if workers > 1:
        raise MultiWorkerError(
            f"this keras training is one of {workers} machines: {MULTI_WORKER_REASON}"
        )
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def precision_policy(spec: ModelSpec, strategy: Any) -> str:
    import tensorflow as tf

    if spec.mixed_precision == "off":
        return "float32"
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "mixed_bfloat16"
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return "float32"
