"""The local target's kfp.local patches (pipelines/targets/local/kfp_local_patches.py): the
private parts they replace still have the shape they were read against, each is replaced for
the run only, and everything is put back afterwards."""

from __future__ import annotations

import builtins
import inspect
import io
import logging
from pathlib import Path

import kfp
from kfp.local import subprocess_task_handler
from kfp.local.orchestrator import enhanced_dag_orchestrator, task_executor

from pipelines.targets.local.capture import Capture
from pipelines.targets.local.console import Console
from pipelines.targets.local.kfp_local_patches import KFP_CHECKED, every_iteration, installed


def _parameters(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


def test_the_patches_were_read_against_the_installed_kfp() -> None:
    # A new kfp release: read the functions the module docstring names again, then update.
    assert kfp.__version__ == KFP_CHECKED


def test_the_replaced_functions_take_what_the_patches_read() -> None:
    executed = _parameters(task_executor.execute_single_task)
    assert executed[:6] == [
        "task_name",
        "task_spec",
        "pipeline_resource_name",
        "components",
        "executors",
        "io_store",
    ]
    assert _parameters(subprocess_task_handler.run_local_subprocess) == [
        "full_command",
        "env_vars",
    ]
    parallel = _parameters(enhanced_dag_orchestrator.ParallelExecutor.execute_parallel_tasks)
    assert parallel[:2] == ["self", "tasks"]
    assert {"io_store", "fail_stack", "parallelism_limit"} <= set(parallel)
    # every_iteration hands the rest on to execute_task as keywords
    assert set(parallel) - {"self", "tasks", "parallelism_limit"} == set(
        _parameters(enhanced_dag_orchestrator.execute_task)
    ) - {"task_name", "task_spec"}
    executor = enhanced_dag_orchestrator.ParallelExecutor()
    assert (executor.max_workers, executor.conservative_max) == (2, 2)


def test_each_part_is_replaced_for_the_run_and_put_back(tmp_path: Path) -> None:
    root_logger = logging.getLogger()
    before = (
        task_executor.execute_single_task,
        subprocess_task_handler.run_local_subprocess,
        enhanced_dag_orchestrator.ParallelExecutor.execute_parallel_tasks,
        builtins.print,
        root_logger.handlers[:],
        root_logger.level,
    )
    capture = Capture(Console(1, stream=io.StringIO()), tmp_path)
    with installed(capture):
        assert task_executor.execute_single_task is not before[0]
        assert subprocess_task_handler.run_local_subprocess == capture.run_subprocess
        assert enhanced_dag_orchestrator.ParallelExecutor.execute_parallel_tasks is every_iteration
        assert [h.stream for h in root_logger.handlers] == [capture.sink]  # type: ignore[attr-defined]
        print("an executor dump")  # kfp.local's own output goes to the sink
        builtins.print = lambda *args, **kwargs: None  # as kfp's indented_print can leave it
    after = (
        task_executor.execute_single_task,
        subprocess_task_handler.run_local_subprocess,
        enhanced_dag_orchestrator.ParallelExecutor.execute_parallel_tasks,
        builtins.print,
        root_logger.handlers[:],
        root_logger.level,
    )
    assert after == before
    assert capture.sink.buffer == ["an executor dump", "\n"]  # no run folder yet: kept
