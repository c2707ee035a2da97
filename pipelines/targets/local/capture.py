"""Where a local run's output goes: each step's lines to its task's log file in the run folder,
its progress events to the console, kfp.local's own lines to `logs/kfp-local.log`; and a record
of every task (candidate, seed, trial, fold, cache state, outputs).

`Capture` is what `kfp_local_patches.installed` hands kfp.local's task execution, step
processes and step containers to; it knows nothing of kfp.local's private signatures.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from components.common.progress import EVENTS_ENV, parse_event
from pipelines.targets.local.console import ANSI, Console
from pipelines.targets.local.tasks import TaskRecord

LOGS_DIR = "logs"
KFP_LOG = "kfp-local.log"
# The exit code kfp.local is given for a step that ended after a stop (128 + SIGTERM).
STOPPED_EXIT_CODE = 143


@dataclass
class TaskCall:
    """One task kfp.local is about to execute, as far as the console needs it."""

    name: str  # kfp's task name, e.g. `train`
    display_name: str  # the task's display name, e.g. `train keras`
    run: str  # the run's folder under the pipeline root (its pipeline resource name)
    arguments: dict[str, Any]  # its inputs, artifacts as kfp.dsl artifacts
    in_container: bool  # a container executor (only those run a step, or come from the cache)


class Sink:
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
    """One run's tasks, step processes and step containers (see the module docstring)."""

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
        self.sink = Sink(console.verbose)
        self.run_dir: Path | None = None
        # The step processes running now (a stop must end them all).
        self.processes: set[subprocess.Popen[str]] = set()
        self.containers: set[Any] = set()  # the same for DockerRunner's step containers
        # Host paths the step containers read besides the pipeline root (DockerRunner mounts
        # that alone): docker volume specs, each at its own path, read-only.
        self.read_only_mounts: dict[str, dict[str, str]] = {}
        self._processes_lock = threading.Lock()

    def execute(
        self, call: TaskCall, run: Callable[[], tuple[dict[str, Any], Any]]
    ) -> tuple[dict[str, Any], Any]:
        """Record and show one task around `run()`, which executes it and returns kfp.local's
        (outputs, status)."""
        run_dir = self.pipeline_root / call.run
        if self.run_dir is None:
            self.run_dir = run_dir
            self.sink.open(run_dir / LOGS_DIR / KFP_LOG)
        arguments = call.arguments
        candidate, seed, trial = _candidate_of(arguments)
        fold, folds = _fold_of(arguments)
        record = self.console.new_task(
            name=call.name,
            step=_step_name(call.display_name, candidate is not None),
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
        self.console.started(record)
        try:
            outputs, task_status = run()
        except BaseException:
            record.status, record.finished = "FAILURE", time.time()
            self._mark_stopped(record)
            self.console.finished(record)
            raise
        finally:
            _current.record = None
        record.finished = time.time()
        record.status = task_status.name
        record.cached = call.in_container and not _current.ran and record.status == "SUCCESS"
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

    def run_subprocess(
        self, full_command: list[str], env_vars: dict[str, str] | None = None
    ) -> int:
        """A step process of kfp.local's SubprocessRunner: its output to the task's log, its
        progress events to the console, and the process known while it runs (a stop ends it)."""
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

    def run_container(
        self, client: Any, image: str, command: list[str], volumes: dict[str, Any], **run_args: Any
    ) -> int:
        """kfp.local's DockerRunner step, as `run_subprocess` runs one: its output to the task's
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
