"""The local target's console: one line per task (step, candidate, seed, status, duration, key
figure), on a terminal live progress bars while training, plain epoch lines elsewhere."""

from __future__ import annotations

import math
import re
import sys
import threading
from typing import IO, Any

from pipelines.targets.local.tasks import TaskRecord

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Plain (non-terminal) output prints at most this many epoch lines per training.
PLAIN_EPOCH_LINES = 5


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
