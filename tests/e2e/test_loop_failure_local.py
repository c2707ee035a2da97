"""kfp.local runs a task that ignores upstream failures after a loop with a failed iteration on
the outputs of the iterations that succeeded, with the local target's ParallelExecutor patch
(pipelines/targets/local/kfp_local_patches.py: every_iteration); kfp 2.17 alone publishes none.

No `from __future__ import annotations` here: KFP reads the components' annotations as types.
"""

from pathlib import Path
from typing import Any

import pytest
from kfp import dsl

pytestmark = pytest.mark.e2e


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def square(number: int) -> int:
    if number == 2:
        raise ValueError("two is refused")
    return number * number


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def total(squares: list = []) -> int:  # noqa: B006 (a KFP default, never mutated)
    return int(sum(squares))


@dsl.pipeline
def loop_with_a_failure() -> int:
    with dsl.ParallelFor([1, 2, 3]) as number:
        squared = square(number=number)
    return total(squares=dsl.Collected(squared.output)).ignore_upstream_failure().output


@pytest.mark.parametrize("patched", [True, False])
def test_a_task_after_a_loop_with_a_failed_iteration_reads_the_others_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, patched: bool
) -> None:
    """The local target's ParallelExecutor patch: the loop fails and the task that ignores
    upstream failures gets the Collected outputs of the iterations that succeeded; kfp 2.17
    itself (the control) publishes none, and reading that task's input ends the run."""
    import builtins

    from kfp import local
    from kfp.local.orchestrator import enhanced_dag_orchestrator, task_executor

    from pipelines.targets.local.kfp_local_patches import every_iteration

    if patched:
        monkeypatch.setattr(
            enhanced_dag_orchestrator.ParallelExecutor, "execute_parallel_tasks", every_iteration
        )
    # kfp.local indents each task's output by swapping builtins.print; two iterations at once can
    # leave its indenting print installed, which every later test would print through.
    monkeypatch.setattr(builtins, "print", builtins.print)
    ran: dict[str, Any] = {}
    original = task_executor.execute_single_task

    def recording(*args: Any, **kwargs: Any) -> Any:
        outputs, state = original(*args, **kwargs)
        ran[kwargs["task_name"]] = (state.name, outputs)
        return outputs, state

    monkeypatch.setattr(task_executor, "execute_single_task", recording)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "root"),
        enable_caching=False,
        raise_on_error=True,
    )
    if patched:
        with pytest.raises(RuntimeError, match="FAILURE"):  # the run fails: a task failed
            loop_with_a_failure()
        assert ran["total"] == ("SUCCESS", {"Output": 10})  # 1 + 9: iteration 2 failed
    else:
        with pytest.raises(ValueError, match="task 'for-loop-2' not found"):
            loop_with_a_failure()
        assert "total" not in ran
