"""Each local task's full output in its own file, beside the console.

kfp.local prints a task's subprocess output and its own log records for that task on the thread
that runs the task (loop iterations run on worker threads), after logging "Executing task 'x'".
`TaskLogs` is the stream those prints go to: it passes everything on to the console stream and
appends it to `<folder>/<task>.log` of the task that the writing thread is running.
"""

from __future__ import annotations

import io
import re
import threading
from pathlib import Path
from typing import IO

UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class TaskLogs(io.TextIOBase):
    def __init__(self, folder: Path, console: IO[str]):
        self.folder = folder
        self.console = console
        self._current: dict[int, str] = {}
        self._files: dict[str, IO[str]] = {}
        self._lock = threading.Lock()

    def begin(self, task: str) -> None:
        """The calling thread now runs `task` (called from the task observer)."""
        self._current[threading.get_ident()] = task

    def path(self, task: str) -> Path:
        return self.folder / f"{UNSAFE.sub('_', task).strip('_') or 'task'}.log"

    def write(self, text: str) -> int:
        self.console.write(text)
        task = self._current.get(threading.get_ident())
        if task is not None:
            with self._lock:
                handle = self._files.get(task)
                if handle is None:
                    self.folder.mkdir(parents=True, exist_ok=True)
                    handle = self._files[task] = self.path(task).open("a", encoding="utf-8")
            handle.write(ANSI.sub("", text))
            handle.flush()
        return len(text)

    def flush(self) -> None:
        self.console.flush()

    def writable(self) -> bool:
        return True

    def close_all(self) -> None:
        with self._lock:
            for handle in self._files.values():
                handle.close()
            self._files.clear()

    def isatty(self) -> bool:
        return self.console.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.console, "encoding", None) or "utf-8"
