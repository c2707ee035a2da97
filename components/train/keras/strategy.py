"""Where Keras trains: the tf.distribute strategy and the mixed-precision policy."""

from __future__ import annotations

import json
import os
from typing import Any

from components.spec import ModelSpec


def choose_strategy() -> Any:
    """TPUStrategy on a TPU VM, MultiWorkerMirrored when TF_CONFIG names several workers,
    Mirrored for several local GPUs, else the default (one device) strategy."""
    import tensorflow as tf

    if os.environ.get("TPU_NAME") or os.environ.get("TPU_WORKER_ID") is not None:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=os.environ.get("TPU_NAME", "local")
        )
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    cluster = json.loads(os.environ.get("TF_CONFIG") or os.environ.get("CLUSTER_SPEC") or "{}")
    workers = cluster.get("cluster", {}).get("worker", []) + cluster.get("cluster", {}).get(
        "chief", []
    )
    if len(workers) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
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
