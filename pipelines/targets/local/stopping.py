"""A clean stop of a local run: SIGINT, SIGTERM or SIGHUP ends every step process, then the run
returns.

kfp.local starts each step as a child process of this one (loop iterations from worker threads).
A SIGTERM to the CLI (what `timeout`, CI runners and systemd send) or a SIGHUP (a closed
terminal or SSH session) would leave them running as orphans, and a Ctrl-C would print a
KeyboardInterrupt traceback. `StopGuard` replaces the three signals' handlers for the length of a
run: the first signal terminates every descendant process, and keeps terminating any that a
worker thread starts afterwards, until the run has unwound; kfp.local then sees its steps fail
and returns. A second signal kills what is left at once. Steps in containers (kfp.local's
DockerRunner) are no descendants: `stop_others` stops them the same way.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

import psutil

SWEEP_SECONDS = 0.2
GRACE_SECONDS = 10.0
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}  # 128 + the signal


def descendants() -> list[psutil.Process]:
    try:
        return psutil.Process().children(recursive=True)
    except psutil.Error:
        return []


def end_processes(processes: list[psutil.Process], grace: float, kill: bool = False) -> None:
    """SIGTERM (or SIGKILL) each process; SIGKILL those still alive after `grace` seconds."""
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill() if kill else process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=grace)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()


class StopGuard:
    """`with StopGuard() as guard: run()`; afterwards `guard.signal` is the signal that stopped
    the run (None when none came) and `guard.exit_code` the CLI's exit code for it."""

    def __init__(
        self, grace: float = GRACE_SECONDS, stop_others: Callable[[float], None] | None = None
    ):
        """`stop_others(grace)` ends steps that are not child processes (containers)."""
        self.grace = grace
        self.stop_others = stop_others
        self.signal: signal.Signals | None = None
        self.at: float | None = None  # when it came (time.time())
        self._previous: dict[int, Any] = {}
        self._done = threading.Event()
        self._sweeper: threading.Thread | None = None

    @property
    def exit_code(self) -> int | None:
        return EXIT_CODES[self.signal] if self.signal is not None else None

    def __enter__(self) -> StopGuard:
        if threading.current_thread() is threading.main_thread():
            for signum in EXIT_CODES:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None:  # a second signal: no more waiting
            end_processes(descendants(), grace=0, kill=True)
            if self.stop_others is not None:
                self.stop_others(0)
            return
        self.signal, self.at = signal.Signals(signum), time.time()
        self._sweeper = threading.Thread(target=self._sweep, name="stop-sweeper", daemon=True)
        self._sweeper.start()

    def _sweep(self) -> None:
        # Worker threads may start a step after the first sweep; end those too until the
        # run has unwound.
        while not self._done.is_set():
            if self.stop_others is not None:
                self.stop_others(self.grace)
            end_processes(descendants(), self.grace)
            self._done.wait(SWEEP_SECONDS)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._done.set()
        if self._sweeper is not None:
            self._sweeper.join()
            if self.stop_others is not None:
                self.stop_others(self.grace)
            end_processes(descendants(), self.grace)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
