"""StopGuard: a signal ends every child process, including ones started after it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import psutil
import pytest

from pipelines.targets.local.stopping import StopGuard

DEADLINE = 60.0
SLEEPER = [sys.executable, "-c", "import time\nwhile True: time.sleep(1)"]


def gone(process: subprocess.Popen) -> bool:
    try:
        process.wait(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        return False
    return True


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_ends_every_step_process(signum: int, code: int) -> None:
    previous = signal.getsignal(signum)
    with StopGuard(grace=5) as guard:
        first = subprocess.Popen(SLEEPER)
        os.kill(os.getpid(), signum)  # the handler runs in this (main) thread, no traceback
        assert gone(first)
        # a step a worker thread starts after the signal is ended too
        late: list[subprocess.Popen] = []
        started = threading.Thread(target=lambda: late.append(subprocess.Popen(SLEEPER)))
        started.start()
        started.join()
        assert gone(late[0])
    assert guard.signal == signum and guard.exit_code == code
    assert signal.getsignal(signum) == previous  # handlers restored
    assert not psutil.Process().children(recursive=True)


def test_no_signal_leaves_processes_alone() -> None:
    with StopGuard() as guard:
        child = subprocess.Popen([sys.executable, "-c", "pass"])
        assert child.wait(timeout=DEADLINE) == 0
    assert guard.signal is None and guard.exit_code is None
