"""The local target's patches of kfp.local's private parts, checked against kfp 2.17.0
(`KFP_CHECKED`).

kfp.local offers no hook for what a local run needs: a line per task instead of its executor
dumps, each step's output in that task's log, steps a stop can end, and a loop whose failed
iteration leaves the others' results to a task that ignores upstream failures. `installed(capture)`
replaces, for the length of one run, and puts back afterwards:

1. `kfp.local.orchestrator.task_executor.execute_single_task`: both orchestrators call every
   task through this module attribute. Wrapped (`_execute`) to hand `Capture.execute` the task's
   name, display name, run folder, arguments (`OrchestratorUtils.make_task_arguments`, as kfp
   builds them: the candidate, seed, trial and fold a task runs) and whether its executor is a
   container (one that starts no process came from kfp's cache), and to read its outputs and
   status.
2. `kfp.local.subprocess_task_handler.run_local_subprocess(full_command, env_vars)`: prints
   every line of the step on stdout. Replaced by `Capture.run_subprocess`: the lines go to the
   task's log, progress events to the console, and the process is known while it runs.
3. `kfp.local.docker_task_handler.run_docker_container(client, image, command, volumes, ...)`
   (DockerRunner; only when the docker package imports): prints every line, pulls an image it
   does not find, and runs with `auto_remove`, so a container gone before `wait` reports 0.
   Replaced by `Capture.run_container`: the same as 2, the container's own exit code, the
   experiment's host inputs mounted read-only.
4. `kfp.local.orchestrator.enhanced_dag_orchestrator.ParallelExecutor.execute_parallel_tasks`:
   returns at the first failed iteration with no outputs. Replaced by `every_iteration`.
5. `builtins.print`: `kfp.local.logging_utils.indented_print` swaps it for an indenting print
   around each task and puts back the one it found; two loop iterations at once can leave the
   indenting one installed. The print of before the run is put back.
6. The root logger's handlers and level: kfp.local logs through the root logger (and
   `logging_utils.local_logger_context` adds a handler on sys.stdout); its lines go to
   `Capture.sink` (the run's kfp-local.log).
7. `sys.stdout` and `warnings.showwarning`: kfp.local prints task inputs and outputs on stdout
   and warns (`task_executor._warn_local_only_noops`) about settings it ignores; both go to
   `Capture.sink` as well.
"""

from __future__ import annotations

import builtins
import contextlib
import inspect
import logging
import warnings
from collections.abc import Iterator
from typing import Any

from pipelines.targets.local.capture import Capture, TaskCall

# The kfp release whose kfp.local these patches were read against; a new one is read again.
KFP_CHECKED = "2.17.0"


def _execute(capture: Capture, original: Any, *args: Any, **kwargs: Any) -> Any:
    """kfp.local's execute_single_task(task_name, task_spec, pipeline_resource_name,
    components, executors, io_store, ...) through `capture.execute` (patch 1)."""
    from kfp.local.orchestrator.orchestrator_utils import OrchestratorUtils

    bound = inspect.signature(original).bind(*args, **kwargs).arguments
    task_spec = bound["task_spec"]
    try:
        arguments = OrchestratorUtils.make_task_arguments(
            task_inputs_spec=task_spec.inputs, io_store=bound["io_store"]
        )
    except Exception:  # kfp raises its own error for missing inputs below
        arguments = {}
    executor = bound["executors"][bound["components"][task_spec.component_ref.name].executor_label]
    call = TaskCall(
        name=str(bound["task_name"]),
        display_name=task_spec.task_info.name or str(bound["task_name"]),
        run=str(bound["pipeline_resource_name"]).split("/")[0],
        arguments=arguments,
        in_container=executor.WhichOneof("spec") == "container",
    )
    return capture.execute(call, lambda: original(*args, **kwargs))


@contextlib.contextmanager
def installed(capture: Capture) -> Iterator[Capture]:
    """kfp.local with the seven patches of the module docstring, for one run."""
    from kfp.local import subprocess_task_handler
    from kfp.local.orchestrator import enhanced_dag_orchestrator, task_executor

    try:  # kfp.local's DockerRunner imports the docker package (the docker extra)
        from kfp.local import docker_task_handler
    except ImportError:
        docker_task_handler = None
    original_execute = task_executor.execute_single_task
    original_run = subprocess_task_handler.run_local_subprocess
    original_container = docker_task_handler and docker_task_handler.run_docker_container
    executor_class = enhanced_dag_orchestrator.ParallelExecutor
    original_parallel = executor_class.execute_parallel_tasks
    root_logger = logging.getLogger()
    handlers, level = root_logger.handlers[:], root_logger.level
    original_print = builtins.print

    def execute(*args: Any, **kwargs: Any) -> Any:
        return _execute(capture, original_execute, *args, **kwargs)

    def show_warning(message: Any, category: Any, filename: str, lineno: int, *_: Any) -> None:
        capture.sink.write(warnings.formatwarning(message, category, filename, lineno))

    task_executor.execute_single_task = execute  # type: ignore[assignment]
    executor_class.execute_parallel_tasks = every_iteration  # type: ignore[method-assign]
    subprocess_task_handler.run_local_subprocess = capture.run_subprocess  # type: ignore[assignment]
    if docker_task_handler is not None:
        docker_task_handler.run_docker_container = capture.run_container  # type: ignore[assignment]
    root_logger.handlers = [logging.StreamHandler(capture.sink)]  # type: ignore[arg-type]
    root_logger.setLevel(logging.INFO)
    try:
        with (
            contextlib.redirect_stdout(capture.sink),  # type: ignore[type-var]
            warnings.catch_warnings(),
        ):
            warnings.showwarning = show_warning  # type: ignore[assignment]
            yield capture
    finally:
        task_executor.execute_single_task = original_execute  # type: ignore[assignment]
        executor_class.execute_parallel_tasks = original_parallel  # type: ignore[method-assign]
        subprocess_task_handler.run_local_subprocess = original_run  # type: ignore[assignment]
        if docker_task_handler is not None:
            docker_task_handler.run_docker_container = original_container  # type: ignore[assignment]
        root_logger.handlers = handlers
        root_logger.setLevel(level)
        builtins.print = original_print
        capture.sink.close()


def every_iteration(
    self: Any,
    tasks: list[tuple[str, Any]],
    *,
    io_store: Any,
    fail_stack: list[str],
    parallelism_limit: int = 0,
    **context: Any,
) -> tuple[dict[str, Any], Any]:
    """kfp.local's ParallelExecutor.execute_parallel_tasks (2.17), but a failed iteration no
    longer hides the others: every iteration runs to its end, and when some failed the loop
    still fails while its Collected outputs hold those of the iterations that succeeded (in
    iteration order), as a task after it that ignores upstream failures reads them.

    kfp 2.17 returns at the first failed iteration with no outputs at all, so with
    compare.on_failure `continue` the compare step (`ignore_upstream_failure()`) would find no
    result of the loop to read (patch 4). As kfp's own, it runs each iteration through
    `enhanced_dag_orchestrator.execute_task` on at most `min(parallelism_limit or
    self.max_workers, self.conservative_max)` threads (2 in kfp 2.17).
    """
    import concurrent.futures

    from kfp.local import status
    from kfp.local.orchestrator import enhanced_dag_orchestrator

    workers = min(parallelism_limit or self.max_workers, self.conservative_max)
    outputs: dict[str, dict[str, Any]] = {}
    failed: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {
            pool.submit(
                enhanced_dag_orchestrator.execute_task,
                task_name=name,
                task_spec=spec,
                io_store=io_store,
                fail_stack=fail_stack,
                **context,
            ): name
            for name, spec in tasks
        }
        for future in concurrent.futures.as_completed(futures):
            name = futures[future]
            try:
                result, task_status = future.result()
            except Exception as exc:  # kfp.local logs these and counts the iteration failed
                logging.error("Task %s failed with exception: %s", name, exc)
                result, task_status = {}, status.Status.FAILURE
            if task_status == status.Status.FAILURE:
                failed.append(name)
                continue
            outputs[name] = result
            for key, value in result.items():
                io_store.put_task_output(name, key, value)
    if not failed:
        return outputs, status.Status.SUCCESS
    fail_stack.extend(sorted(failed))
    loop = tasks[0][0].rsplit("-iteration-", 1)[0]
    for key in sorted({key for result in outputs.values() for key in result}):
        io_store.put_task_output(
            loop, key, [outputs[n][key] for n, _ in tasks if key in outputs.get(n, {})]
        )
    return {}, status.Status.FAILURE
