"""Where a training runs when it is more than one process: the machines of a Vertex AI custom job
(its `CLUSTER_SPEC`), the processes `torchrun` starts on each, and what each process learns from
torchrun's environment.

On Vertex AI every replica of a custom job runs the same command, the train step. Worker pool 0
holds the chief (one replica), pool 1 the other replicas; Vertex tells each which it is in the
`CLUSTER_SPEC` JSON. The step then runs `torchrun` with the node count, this node's rank and the
chief's address, one process per local GPU: torchrun gives each process its global `RANK`, its
`LOCAL_RANK` and the `WORLD_SIZE`. On Kubeflow Trainer the TrainJob's runtime starts torchrun
itself, with the same settings as `PET_*` variables (torchrun's own environment defaults).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

CHIEF_POOL = "workerpool0"
WORKER_POOL = "workerpool1"
# Pools 2 (reduction servers or parameter servers) and 3 (evaluators) run no training process.
TRAINING_POOLS = (CHIEF_POOL, WORKER_POOL)
# The port torchrun's rendezvous listens on when the chief's address names none.
DEFAULT_MASTER_PORT = 29500


class ClusterSpecError(ValueError):
    """A CLUSTER_SPEC this step cannot train in."""


@dataclass(frozen=True)
class Nodes:
    """The machines of one training, chief first, and which of them this one is."""

    addresses: tuple[str, ...]  # host:port of every node; the chief's is the rendezvous
    rank: int

    @property
    def count(self) -> int:
        return len(self.addresses)

    @property
    def is_chief(self) -> bool:
        return self.rank == 0

    @property
    def master_addr(self) -> str:
        host, _, _ = self.addresses[0].rpartition(":")
        return host or self.addresses[0]

    @property
    def master_port(self) -> int:
        _, colon, port = self.addresses[0].rpartition(":")
        return int(port) if colon and port.isdigit() else DEFAULT_MASTER_PORT

    def rendezvous_env(self) -> dict[str, str]:
        """MASTER_ADDR, MASTER_PORT, RANK and WORLD_SIZE of this node, counted in nodes (what
        Vertex AI's prebuilt PyTorch images set; torchrun turns them into per-process ones)."""
        return {
            "MASTER_ADDR": self.master_addr,
            "MASTER_PORT": str(self.master_port),
            "RANK": str(self.rank),
            "WORLD_SIZE": str(self.count),
        }


SINGLE_NODE = Nodes(("127.0.0.1",), 0)


def parse_cluster_spec(text: str) -> Nodes:
    """The nodes of a Vertex AI `CLUSTER_SPEC`:
    `{"cluster": {"workerpool0": ["host:port"], "workerpool1": [...]}, "task": {"type":
    "workerpool1", "index": 0}, ...}`. The chief is rank 0, pool 1's replicas follow in order."""
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClusterSpecError(f"CLUSTER_SPEC is not JSON ({exc.msg}): {text[:200]!r}") from exc
    cluster, task = spec.get("cluster"), spec.get("task")
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ClusterSpecError(f"CLUSTER_SPEC has no 'cluster' and 'task' objects: {text[:200]!r}")
    chief = cluster.get(CHIEF_POOL) or []
    workers = cluster.get(WORKER_POOL) or []
    if len(chief) != 1:
        raise ClusterSpecError(
            f"CLUSTER_SPEC: {CHIEF_POOL} must hold exactly one replica (the chief), it holds "
            f"{len(chief)}; set the job's first worker pool's replica_count to 1"
        )
    kind, index = task.get("type"), task.get("index", 0)
    if kind not in TRAINING_POOLS:
        raise ClusterSpecError(
            f"CLUSTER_SPEC: this replica is in {kind!r}; the train step runs only in "
            f"{' and '.join(TRAINING_POOLS)}"
        )
    pool = chief if kind == CHIEF_POOL else workers
    if not isinstance(index, int) or not 0 <= index < len(pool):
        raise ClusterSpecError(f"CLUSTER_SPEC: task index {index!r} is not in {kind} ({pool})")
    addresses = tuple(str(a) for a in [*chief, *workers])
    return Nodes(addresses, index if kind == CHIEF_POOL else 1 + index)


def nodes_from_environment(env: Mapping[str, str] | None = None) -> Nodes:
    """This training's nodes: from Vertex AI's CLUSTER_SPEC, else this machine alone."""
    env = os.environ if env is None else env
    text = env.get("CLUSTER_SPEC")
    return parse_cluster_spec(text) if text else SINGLE_NODE


def torchrun_command(
    nodes: Nodes, procs_per_node: int, module: str, args: Sequence[str]
) -> list[str]:
    """The torchrun command line that starts `procs_per_node` processes of `python -m module
    args` on this node and joins them with the other nodes' (static rendezvous at the chief)."""
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs_per_node}"]
    if nodes.count == 1:
        command.append("--standalone")  # a free local port; nothing to reach
    else:
        command += [
            f"--nnodes={nodes.count}",
            f"--node_rank={nodes.rank}",
            f"--master_addr={nodes.master_addr}",
            f"--master_port={nodes.master_port}",
        ]
    return [*command, "-m", module, *args]


@dataclass(frozen=True)
class Process:
    """One training process as torchrun started it (one process alone when not)."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1
    local_world: int = 1

    @property
    def is_chief(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> Process:
        env = os.environ if env is None else env
        if "RANK" not in env or "LOCAL_RANK" not in env:
            return cls()
        names = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE")
        rank, local_rank, world, local_world = (int(env.get(name, "1")) for name in names)
        return cls(rank, local_rank, world, local_world)


def leave_outputs_to_the_chief() -> None:
    """End a worker replica's train step here, after its training processes finished.

    Every replica of a Vertex AI custom job runs the whole step, and the KFP executor would,
    on return, write the task's output metadata to the same Cloud Storage file as the chief:
    the last one to finish would win. Only the chief (node 0) writes the Model and its
    metadata; the others leave without the executor's epilogue.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def describe(nodes: Nodes, procs_per_node: int) -> str:
    """`training on 2 nodes x 4 processes (node 1, chief cmle-training-workerpool0-..:2222)`."""
    where = f"node {nodes.rank}, chief {nodes.addresses[0]}" if nodes.count > 1 else "this node"
    return f"training on {nodes.count} node(s) x {procs_per_node} process(es) ({where})"
