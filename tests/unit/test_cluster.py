"""Vertex AI's CLUSTER_SPEC, the torchrun command each node runs, torchrun's environment, and the
keras strategy's refusal of several machines."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from components.train.cluster import (
    DEFAULT_MASTER_PORT,
    SINGLE_NODE,
    ClusterSpecError,
    Process,
    nodes_from_environment,
    parse_cluster_spec,
    torchrun_command,
)
from components.train.keras.strategy import MultiWorkerError, choose_strategy, cluster_workers

CHIEF = "cmle-training-workerpool0-1a2b3c-0:2222"
WORKERS = ["cmle-training-workerpool1-1a2b3c-0:2222", "cmle-training-workerpool1-1a2b3c-1:2222"]


def cluster_spec(kind: str, index: int, **cluster: Any) -> str:
    """A CLUSTER_SPEC as Vertex AI writes it (the job's own spec rides along as a string)."""
    pools = cluster or {"workerpool0": [CHIEF], "workerpool1": WORKERS}
    return json.dumps(
        {
            "cluster": pools,
            "environment": "cloud",
            "task": {"type": kind, "index": index},
            "job": json.dumps({"worker_pool_specs": [{}, {}]}),
        }
    )


@pytest.mark.parametrize(
    ("kind", "index", "rank"),
    [("workerpool0", 0, 0), ("workerpool1", 0, 1), ("workerpool1", 1, 2)],
)
def test_the_chief_is_rank_0_and_the_workers_follow_in_order(kind, index, rank):
    nodes = parse_cluster_spec(cluster_spec(kind, index))

    assert (nodes.count, nodes.rank, nodes.is_chief) == (3, rank, rank == 0)
    assert nodes.master_addr == CHIEF.split(":")[0] and nodes.master_port == 2222
    assert nodes.rendezvous_env() == {
        "MASTER_ADDR": "cmle-training-workerpool0-1a2b3c-0",
        "MASTER_PORT": "2222",
        "RANK": str(rank),
        "WORLD_SIZE": "3",
    }


def test_reduction_servers_and_evaluators_are_not_nodes():
    text = cluster_spec(
        "workerpool1",
        0,
        workerpool0=[CHIEF],
        workerpool1=WORKERS[:1],
        workerpool2=["reduction-server-0:2222"],
        workerpool3=["evaluator-0:2222"],
    )
    nodes = parse_cluster_spec(text)
    assert nodes.addresses == (CHIEF, WORKERS[0])
    with pytest.raises(ClusterSpecError, match="'workerpool2'; the train step runs only in"):
        parse_cluster_spec(text.replace('"type": "workerpool1"', '"type": "workerpool2"'))


def test_a_chief_without_port_rendezvous_on_torchruns_default():
    nodes = parse_cluster_spec(cluster_spec("workerpool0", 0, workerpool0=["chief-host"]))
    assert (nodes.master_addr, nodes.master_port, nodes.count) == (
        "chief-host",
        DEFAULT_MASTER_PORT,
        1,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "CLUSTER_SPEC is not JSON"),
        (json.dumps({"task": {}}), "no 'cluster' and 'task'"),
        (cluster_spec("workerpool0", 0, workerpool0=[CHIEF, CHIEF]), "exactly one replica"),
        (cluster_spec("workerpool0", 0, workerpool1=WORKERS), "exactly one replica"),
        (cluster_spec("workerpool1", 2), "task index 2 is not in workerpool1"),
    ],
)
def test_a_cluster_spec_we_cannot_train_in_says_why(text, message):
    with pytest.raises(ClusterSpecError, match=message):
        parse_cluster_spec(text)


def test_without_a_cluster_spec_this_machine_trains_alone():
    assert nodes_from_environment({}) == SINGLE_NODE
    assert nodes_from_environment({"CLUSTER_SPEC": cluster_spec("workerpool1", 1)}).rank == 2


def test_torchrun_joins_the_nodes_at_the_chief():
    nodes = parse_cluster_spec(cluster_spec("workerpool1", 1))
    command = torchrun_command(nodes, 4, "pkg.worker", ["request.json"])

    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert command[-3:] == ["-m", "pkg.worker", "request.json"]
    options = command[3:-3]
    assert set(options) == {
        "--nproc_per_node=4",
        "--nnodes=3",
        "--node_rank=2",
        "--master_addr=cmle-training-workerpool0-1a2b3c-0",
        "--master_port=2222",
    }
    alone = torchrun_command(SINGLE_NODE, 2, "pkg.worker", [])
    assert alone[3:-2] == ["--nproc_per_node=2", "--standalone"]


def test_a_process_reads_what_torchrun_set():
    env = {"RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4"}
    process = Process.from_environment(env)
    assert (process.rank, process.local_rank, process.world, process.local_world) == (5, 1, 8, 4)
    assert not process.is_chief
    assert Process.from_environment({}) == Process()


def test_keras_counts_the_machines_of_tf_config_and_cluster_spec(monkeypatch):
    tf_config = {"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]}, "task": {}}
    assert cluster_workers({"TF_CONFIG": json.dumps(tf_config)}) == 3
    assert cluster_workers({"CLUSTER_SPEC": cluster_spec("workerpool0", 0)}) == 3
    assert cluster_workers({}) == 1

    pytest.importorskip("tensorflow")
    monkeypatch.delenv("TPU_NAME", raising=False)
    monkeypatch.delenv("TPU_WORKER_ID", raising=False)
    monkeypatch.setenv("CLUSTER_SPEC", cluster_spec("workerpool1", 0))
    with pytest.raises(MultiWorkerError, match=r"one of 3 machines: .*keras-team/keras#20585"):
        choose_strategy()
