"""Facts of the KFP cluster the `kfp` target runs on: where its pods run, the volumes a step
mounts, the Kubernetes GPU resource, and whether a node offers it (kubectl)."""

from __future__ import annotations

import json
from typing import Any

GPU_RESOURCE = "nvidia.com/gpu"
KFP_NAMESPACE = "kubeflow"  # where KFP standalone runs its pods (infra/kind/common.sh)
REGISTRY_MOUNT = "/mnt/registry"
TRAINING_MOUNT = "/mnt/training"  # the volume a train step shares with its TrainJob
DATA_MOUNT = "/mnt/data"
KUBECTL_TIMEOUT_S = 5  # a cluster that is down must not hold up compiling


def gpu_nodes(context: str) -> int | None:
    """How many nodes of the cluster of kubectl `context` offer nvidia.com/gpu, or None when
    kubectl cannot say (not installed, no such context, the cluster down)."""
    import shutil
    import subprocess

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    try:
        answer = subprocess.run(
            [
                kubectl,
                "--context",
                context,
                "get",
                "nodes",
                "-o",
                "json",
                f"--request-timeout={KUBECTL_TIMEOUT_S}s",
            ],
            capture_output=True,
            text=True,
            timeout=KUBECTL_TIMEOUT_S + 5,
            check=False,
        )
        nodes = json.loads(answer.stdout)["items"] if answer.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError):
        return None
    if nodes is None:
        return None
    return sum(
        1
        for node in nodes
        if str(node.get("status", {}).get("allocatable", {}).get(GPU_RESOURCE, "0"))
        not in ("0", "")
    )


def pending_gpu_warning(experiment: Any) -> str | None:
    """A warning when training asks for GPUs that no node of the cluster offers: its pod would
    stay Pending. kind clusters have no GPU node unless made with nvkind (infra/kind)."""
    gpus = experiment.resources.kfp.gpus
    if not gpus:
        return None
    settings = experiment.kfp
    if settings.gpu_nodes is None:
        found = gpu_nodes(settings.kube_context)
        if found is None or found:
            return None
        where = (
            f"no node of the cluster of kube context {settings.kube_context} offers {GPU_RESOURCE}"
        )
    elif not settings.gpu_nodes:
        where = f"kfp.gpu_nodes is false: no node of the cluster offers {GPU_RESOURCE}"
    else:
        return None
    return (
        f"resources.kfp.gpus is {gpus} but {where} (kind has none unless made with nvkind, "
        "see infra/kind/cluster.yaml): the training pods would stay Pending. Train on CPU with "
        "--set resources.kfp.gpus=0, or add a GPU node"
    )
