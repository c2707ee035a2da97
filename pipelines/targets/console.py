"""The local target's console: one line per task, progress while training, every step's own
output in that task's log file in the run folder.

kfp.local (2.17) streams each step's output and its own executor dumps to stdout and offers no
hook for either, so while a run lasts `capture()` replaces two of its functions: the one that
executes a task (to learn the task's candidate, seed, outputs and cache state) and the one that
runs a step's subprocess (to send its lines to the task's log). Steps report progress as event
lines (components.common.progress), which become task lines and, on a terminal, live bars.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import inspect
import json
import logging
import math
import os
import re
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from components.common.names import task_slug
from components.common.progress import EVENTS_ENV, parse_event

ANSI = re.compile(r"\x1b\[[0-9;]*m")
LOGS_DIR = "logs"
KFP_LOG = "kfp-local.log"
# Plain (non-terminal) output prints at most this many epoch lines per training.
PLAIN_EPOCH_LINES = 5
# The exit code kfp.local is given for a step that ended after a stop (128 + SIGTERM).
STOPPED_EXIT_CODE = 143


@dataclass
class TaskRecord:
    """One task of the run (a candidate x seed iteration counts once per task)."""

    name: str  # kfp's task name, e.g. `train`
    step: str  # what the console calls it, e.g. `train`, `best model`
    number: int
    run_dir: Path
    candidate: str | None = None
    seed: int | None = None
    trial: int | None = None  # a search trial: Optuna's trial number (from 0)
    trials: int | None = None  # ... of this many in the candidate's search
    fold: int | None = None  # a search trial's fold (search.folds), from 0
    folds: int | None = None  # ... of this many
    status: str = "RUNNING"  # RUNNING, SUCCESS, FAILURE, STOPPED (ended by a stop of the run)
    cached: bool = False
    # The task failed and the run goes on without its candidate x seed (compare.on_failure:
    # continue): the compare step still runs on the others.
    goes_on: bool = False
    earlier_seconds: float | None = None  # cached: the time it took in the run that ran it
    resumed_from: int = 0  # epochs a training found done in its checkpoints (0: a first start)
    inputs: str = (
        ""  # a digest of the task's inputs: a cached task's are those of the run that ran it
    )
    started: float = field(default_factory=time.time)
    finished: float = 0.0
    log: Path | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    figure: str = ""
    epochs: int = 0
    steps: int = 0
    epoch_lines: int = 0

    @property
    def label(self) -> str:
        if self.candidate is None:
            return self.step
        if self.trial is not None:
            of = f"/{self.trials}" if self.trials is not None else ""
            fold = f" fold {self.fold + 1}/{self.folds}" if self.fold is not None else ""
            return f"{self.step} {self.candidate} trial {self.trial + 1}{of}{fold}"
        return f"{self.step} {self.candidate}" + (
            f" seed {self.seed}" if self.seed is not None else ""
        )

    @property
    def slug(self) -> str:
        return task_slug(self.step, self.candidate, self.seed, self.trial, self.fold)

    @property
    def seconds(self) -> float:
        return max(self.finished - self.started, 0.0) if self.finished else 0.0

    @property
    def ran_seconds(self) -> float | None:
        """The task's real time: for a cached task, the time of the run that ran it (None when
        that is not known)."""
        if self.cached:
            return self.earlier_seconds
        return self.seconds


def resume_note(done: int, epochs: int, verb: str = "resuming") -> str:
    """`resuming at epoch 54/150`: a training that found `done` of its `epochs` finished."""
    if done >= epochs:
        return f"{verb} after all {epochs} epochs"
    return f"{verb} at epoch {done + 1}/{epochs}"


class Console:
    """Renders task lines and progress. Plain lines without escapes unless `live` (a terminal)."""

    def __init__(self, total: int, verbose: bool = False, stream: IO[str] | None = None):
        self.total = total
        self.verbose = verbose
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() and not verbose
        self.tasks: list[TaskRecord] = []
        self.lock = threading.RLock()
        self._bars: dict[int, Any] = {}
        self._progress: Any = None
        if self.live:
            from rich.console import Console as RichConsole
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeRemainingColumn(),
                console=RichConsole(file=self.stream),
                redirect_stdout=False,
                redirect_stderr=False,
                transient=True,
            )

    def __enter__(self) -> Console:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def print(self, text: str) -> None:
        with self.lock:
            if self._progress is not None:
                self._progress.console.print(text, markup=False, highlight=False)
            else:
                self.stream.write(text + "\n")
                self.stream.flush()

    def new_task(self, **fields: Any) -> TaskRecord:
        with self.lock:
            record = TaskRecord(number=len(self.tasks) + 1, **fields)
            self.tasks.append(record)
            return record

    def _head(self, record: TaskRecord) -> str:
        return f"[{record.number}/{max(self.total, record.number)}] {record.label}"

    def started(self, record: TaskRecord) -> None:
        self.print(f"{self._head(record)} ...")

    def finished(self, record: TaskRecord) -> None:
        with self.lock:
            bar = self._bars.pop(record.number, None)
            if bar is not None:
                self._progress.remove_task(bar)
        if record.cached:
            outcome = "cached" + (
                f" (ran in {record.earlier_seconds:.1f} s)"
                if record.earlier_seconds is not None
                else ""
            )
        elif record.status == "SUCCESS":
            outcome = f"done in {record.seconds:.1f} s"
        elif record.status == "STOPPED":
            outcome = f"stopped after {record.seconds:.1f} s"
        else:
            outcome = f"FAILED after {record.seconds:.1f} s" + (
                " (the other candidates go on)" if record.goes_on else ""
            )
            outcome += f", log: {record.log}" if record.log else ""
        if record.resumed_from and not record.cached:
            outcome += f" ({resume_note(record.resumed_from, record.epochs, 'resumed')})"
        self.print(
            f"{self._head(record)} ... {outcome}" + (f", {record.figure}" if record.figure else "")
        )

    def event(self, record: TaskRecord, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "epochs":
            record.epochs, record.steps = int(event["epochs"]), int(event["steps"])
            done = int(event.get("done", 0))
            if done:
                record.resumed_from = done
                self.print(f"{self._head(record)} ... {resume_note(done, record.epochs)}")
            self._bar(record, done * record.steps)
        elif kind == "batch":
            self._bar(record, (int(event["epoch"]) - 1) * record.steps + int(event["step"]), event)
        elif kind == "epoch":
            epoch = int(event["epoch"])
            self._bar(record, epoch * record.steps, event)
            if not self.live and self._plain_epoch_due(record, epoch):
                record.epoch_lines += 1
                metrics = "  ".join(f"{k} {v:.4g}" for k, v in event.get("metrics", {}).items())
                self.print(f"      {record.label}  epoch {epoch}/{record.epochs}  {metrics}")

    def _plain_epoch_due(self, record: TaskRecord, epoch: int) -> bool:
        stride = max(1, math.ceil(record.epochs / PLAIN_EPOCH_LINES))
        return epoch % stride == 0 and record.epoch_lines < PLAIN_EPOCH_LINES

    def _bar(self, record: TaskRecord, completed: int, event: dict[str, Any] | None = None) -> None:
        if self._progress is None or not record.epochs:
            return
        epoch = int(event["epoch"]) if event else 1
        description = f"{record.label}  epoch {epoch}/{record.epochs}"
        with self.lock:
            bar = self._bars.get(record.number)
            if bar is None:
                bar = self._bars[record.number] = self._progress.add_task(
                    description, total=record.epochs * max(record.steps, 1)
                )
            self._progress.update(bar, completed=completed, description=description)


class _Sink:
    """Where kfp.local's own lines go while the run lasts: its log file (buffered until the run
    folder is known), and stderr as well when verbose."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.buffer: list[str] = []
        self.file: IO[str] | None = None
        self.lock = threading.Lock()

    def open(self, path: Path) -> None:
        with self.lock:
            if self.file is None:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.file = path.open("a", encoding="utf-8")
                self.file.write("".join(self.buffer))
                self.buffer.clear()

    def write(self, text: str) -> int:
        text = ANSI.sub("", text)
        with self.lock:
            if self.file is not None:
                self.file.write(text)
            else:
                self.buffer.append(text)
        if self.verbose and sys.__stderr__ is not None:
            sys.__stderr__.write(text)
        return len(text)

    def flush(self) -> None:
        with self.lock:
            if self.file is not None:
                self.file.flush()

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        with self.lock:
            if self.file is not None:
                self.file.close()
                self.file = None


_current = threading.local()


def _candidate_of(arguments: dict[str, Any]) -> tuple[str | None, int | None, int | None]:
    """The candidate, seed and search trial (None but in a search) a train (candidate
    parameter) or evaluate (model artifact) runs."""
    candidate = arguments.get("candidate")
    if isinstance(candidate, dict) and "model_spec" in candidate:
        trial = candidate.get("trial")
        return (
            str(candidate["model_spec"]["name"]),
            int(candidate["seed"]),
            int(trial) if trial is not None else None,
        )
    model = arguments.get("model")
    metadata = getattr(model, "metadata", None) or {}
    if "name" in metadata:
        seed, trial = metadata.get("seed"), metadata.get("trial")
        return (
            str(metadata["name"]),
            int(seed) if seed is not None else None,
            int(trial) if trial is not None else None,
        )
    return None, None, None


def _fold_of(arguments: dict[str, Any]) -> tuple[int | None, int | None]:
    """The fold and fold count of a search trial's training (search.folds); None, None for
    every other task."""
    candidate = arguments.get("candidate")
    fold = candidate.get("fold") if isinstance(candidate, dict) else None
    if not isinstance(fold, dict):
        return None, None
    return int(fold["index"]), int(fold["count"])


def inputs_digest(arguments: dict[str, Any]) -> str:
    """A digest of a task's arguments, artifacts by their URI."""
    text = json.dumps(
        arguments, sort_keys=True, default=lambda value: getattr(value, "uri", None) or repr(value)
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _step_name(display_name: str, has_candidate: bool) -> str:
    # "train keras" -> "train": the framework shows in the candidate's row of the summary
    return display_name.split()[0] if has_candidate else display_name


class Capture:
    """Installs the console into kfp.local for one run (see the module docstring)."""

    def __init__(
        self,
        console: Console,
        pipeline_root: Path,
        figure: Callable[[TaskRecord], str] = lambda record: "",
        trials: dict[str, int] | None = None,
        stopped_at: Callable[[], float | None] = lambda: None,
        goes_on: Callable[[TaskRecord], bool] = lambda record: False,
        cached_seconds: Callable[[TaskRecord], float | None] = lambda record: None,
    ) -> None:
        """`figure(record)` is the key figure a finished task's line ends with; `trials` is
        each searched candidate's trial count (a trial's line reads `trial 3/16`);
        `stopped_at()` when a stop of the run came (None while none has); `goes_on(record)`
        whether the run goes on past this task when it fails;
        `cached_seconds(record)` the time a cached task took in the run that ran it (None when
        unknown)."""
        self.console = console
        self.pipeline_root = pipeline_root
        self.figure = figure
        self.trials = dict(trials or {})
        self.stopped_at = stopped_at
        self.goes_on = goes_on
        self.cached_seconds = cached_seconds
        self.sink = _Sink(console.verbose)
        self.run_dir: Path | None = None
        # The step processes running now (a stop must end them all).
        self.processes: set[subprocess.Popen[str]] = set()
        self.containers: set[Any] = set()  # the same for DockerRunner's step containers
        # Host paths the step containers read besides the pipeline root (DockerRunner mounts
        # that alone): docker volume specs, each at its own path, read-only.
        self.read_only_mounts: dict[str, dict[str, str]] = {}
        self._processes_lock = threading.Lock()

    def _execute(self, original: Any, *args: Any, **kwargs: Any) -> Any:
        from kfp.local.orchestrator.orchestrator_utils import OrchestratorUtils

        bound = inspect.signature(original).bind(*args, **kwargs).arguments
        task_spec = bound["task_spec"]
        resource = str(bound["pipeline_resource_name"])
        run_dir = self.pipeline_root / resource.split("/")[0]
        if self.run_dir is None:
            self.run_dir = run_dir
            self.sink.open(run_dir / LOGS_DIR / KFP_LOG)
        try:
            arguments = OrchestratorUtils.make_task_arguments(
                task_inputs_spec=task_spec.inputs, io_store=bound["io_store"]
            )
        except Exception:  # kfp raises its own error for missing inputs below
            arguments = {}
        candidate, seed, trial = _candidate_of(arguments)
        fold, folds = _fold_of(arguments)
        display = task_spec.task_info.name or str(bound["task_name"])
        record = self.console.new_task(
            name=str(bound["task_name"]),
            step=_step_name(display, candidate is not None),
            run_dir=run_dir,
            candidate=candidate,
            seed=seed,
            trial=trial,
            trials=self.trials.get(candidate) if trial is not None and candidate else None,
            fold=fold,
            folds=folds,
        )
        record.inputs = inputs_digest(arguments)
        _current.record, _current.ran = record, False
        is_container = (
            bound["executors"][
                bound["components"][task_spec.component_ref.name].executor_label
            ].WhichOneof("spec")
            == "container"
        )
        self.console.started(record)
        try:
            outputs, task_status = original(*args, **kwargs)
        except BaseException:
            record.status, record.finished = "FAILURE", time.time()
            self._mark_stopped(record)
            self.console.finished(record)
            raise
        finally:
            _current.record = None
        record.finished = time.time()
        record.status = task_status.name
        record.cached = is_container and not _current.ran and record.status == "SUCCESS"
        record.outputs = dict(outputs or {})
        record.goes_on = record.status == "FAILURE" and self.goes_on(record)
        if record.cached:
            record.earlier_seconds = self.cached_seconds(record)
        self._mark_stopped(record)
        record.figure = self.figure(record)
        self.console.finished(record)
        return outputs, task_status

    def _mark_stopped(self, record: TaskRecord) -> None:
        # A step that ends after a stop came was ended by it (kfp.local may even log it as a
        # success): it shows as stopped, not as failed.
        at = self.stopped_at()
        if at is not None and not record.cached and record.finished >= at:
            record.status = "STOPPED"

    def _run_subprocess(
        self, full_command: list[str], env_vars: dict[str, str] | None = None
    ) -> int:
        record, log_path = self._task_log()
        env = {**os.environ, **(env_vars or {}), EVENTS_ENV: "1", "PYTHONUNBUFFERED": "1"}
        with contextlib.ExitStack() as stack:
            log = stack.enter_context(log_path.open("a", encoding="utf-8")) if log_path else None
            process = stack.enter_context(
                subprocess.Popen(
                    full_command,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    bufsize=1,
                    env=env,
                )
            )
            assert process.stdout is not None
            with self._processes_lock:
                self.processes.add(process)
            stack.callback(self._forget, process)
            self._consume(process.stdout, record, log)
            return self._exit_code(process.wait())

    def _exit_code(self, code: int) -> int:
        """What kfp.local is told of a step process that exited with `code`: a step that ends
        after a stop came failed, whatever its own code. kfp.local caches every task that exits
        0 with whatever outputs it wrote, none included; a step that a stop ended (a process
        that handles SIGTERM and exits 0, a shell whose child was ended before it) must leave
        no cache entry, so the next run executes it again."""
        if code == 0 and self.stopped_at() is not None:
            return STOPPED_EXIT_CODE
        return code

    def _consume(
        self, lines: Iterable[str], record: TaskRecord | None, log: IO[str] | None
    ) -> None:
        """A step's output: events to the console, the rest to the task's log (and, verbose,
        the console)."""
        for line in lines:
            event = parse_event(line)
            if event is not None:
                if record is not None:
                    self.console.event(record, event)
                continue
            if log is not None:
                log.write(line)
                log.flush()
            if self.console.verbose:
                self.console.print(line.rstrip("\n"))

    def _task_log(self) -> tuple[TaskRecord | None, Path | None]:
        record: TaskRecord | None = getattr(_current, "record", None)
        _current.ran = True
        if record is None:
            return None, None
        log_path = record.run_dir / LOGS_DIR / f"{record.slug}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        record.log = log_path
        return record, log_path

    def _run_container(
        self, client: Any, image: str, command: list[str], volumes: dict[str, Any], **run_args: Any
    ) -> int:
        """kfp.local's DockerRunner step, as `_run_subprocess` runs one: its output to the task's
        log, its exit code from the container itself (kfp.local's own reports 0 for a container
        removed before it was asked), and the container stoppable while it runs."""
        record, log_path = self._task_log()
        environment = {**run_args.pop("environment", {}), EVENTS_ENV: "1", "PYTHONUNBUFFERED": "1"}
        container = client.containers.run(
            image=image,
            command=command,
            detach=True,
            volumes={**self.read_only_mounts, **volumes},
            environment=environment,
            **run_args,
        )
        with self._processes_lock:
            self.containers.add(container)
        try:
            with contextlib.ExitStack() as stack:
                log = (
                    stack.enter_context(log_path.open("a", encoding="utf-8")) if log_path else None
                )
                chunks = container.logs(stream=True, follow=True)
                self._consume(_lines(chunks), record, log)
            return self._exit_code(int(container.wait()["StatusCode"]))
        finally:
            with self._processes_lock:
                self.containers.discard(container)
            with contextlib.suppress(Exception):
                container.remove(force=True)

    def stop_containers(self, grace: float) -> None:
        """Stop every step container still running (SIGTERM, SIGKILL after `grace` seconds)."""
        with self._processes_lock:
            running = list(self.containers)
        for container in running:
            with contextlib.suppress(Exception):
                container.stop(timeout=int(grace))

    def _forget(self, process: subprocess.Popen[str]) -> None:
        with self._processes_lock:
            self.processes.discard(process)

    @contextlib.contextmanager
    def installed(self) -> Iterator[Capture]:
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
        # kfp.local indents step output by swapping builtins.print per task; two tasks at once
        # can leave its indenting print installed, so the original is put back here.
        original_print = builtins.print

        def execute(*args: Any, **kwargs: Any) -> Any:
            return self._execute(original_execute, *args, **kwargs)

        task_executor.execute_single_task = execute  # type: ignore[assignment]
        executor_class.execute_parallel_tasks = every_iteration  # type: ignore[method-assign]
        subprocess_task_handler.run_local_subprocess = self._run_subprocess  # type: ignore[assignment]
        if docker_task_handler is not None:
            docker_task_handler.run_docker_container = self._run_container  # type: ignore[assignment]
        root_logger.handlers = [logging.StreamHandler(self.sink)]  # type: ignore[arg-type]
        root_logger.setLevel(logging.INFO)
        try:
            with (
                contextlib.redirect_stdout(self.sink),  # type: ignore[type-var]
                warnings.catch_warnings(),
            ):
                warnings.showwarning = self._warning  # type: ignore[assignment]
                yield self
        finally:
            task_executor.execute_single_task = original_execute  # type: ignore[assignment]
            executor_class.execute_parallel_tasks = original_parallel  # type: ignore[method-assign]
            subprocess_task_handler.run_local_subprocess = original_run  # type: ignore[assignment]
            if docker_task_handler is not None:
                docker_task_handler.run_docker_container = original_container  # type: ignore[assignment]
            root_logger.handlers = handlers
            root_logger.setLevel(level)
            builtins.print = original_print
            self.sink.close()

    def _warning(self, message: Any, category: Any, filename: str, lineno: int, *_: Any) -> None:
        self.sink.write(warnings.formatwarning(message, category, filename, lineno))


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
    result of the loop to read.
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


def _lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Whole text lines from a container's log stream, whose chunks may split lines."""
    pending = ""
    for chunk in chunks:
        pending += chunk.decode("utf-8", errors="replace")
        *whole, pending = pending.split("\n")
        for line in whole:
            yield line + "\n"
    if pending:
        yield pending
