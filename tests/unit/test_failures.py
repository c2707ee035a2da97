"""A failed step's own exception, found in its log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipelines.failures import exception_message, failure

STEP_SCRIPT = """
class SourceError(ValueError):
    pass

def read():
    raise SourceError("folder:/data/pets is not a directory; expected /data/pets/<class>/<image files>")

read()
"""


def run_step(tmp_path: Path, script: str) -> str:
    """A real traceback, as a step process prints it (kfp.local indents it by four spaces)."""
    path = tmp_path / "step.py"
    path.write_text(script)
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True)
    assert done.returncode == 1
    noise = "    I0000 tensorflow chatter\n    Epoch 1/3\n"
    return noise + "".join(f"    {line}\n" for line in done.stderr.splitlines()) + "\n\n"


def test_the_exception_of_a_real_traceback(tmp_path: Path) -> None:
    found = exception_message(run_step(tmp_path, STEP_SCRIPT))
    assert found == (
        "SourceError",
        "folder:/data/pets is not a directory; expected /data/pets/<class>/<image files>",
    )


def test_the_last_of_chained_tracebacks_is_the_one_raised(tmp_path: Path) -> None:
    script = (
        "try:\n    {}['x']\nexcept KeyError as exc:\n"
        "    raise ValueError('csv:labels.csv has no column label') from exc\n"
    )
    assert exception_message(run_step(tmp_path, script)) == (
        "ValueError",
        "csv:labels.csv has no column label",
    )


def test_a_message_over_several_lines_is_joined(tmp_path: Path) -> None:
    script = "raise ValueError('first line\\nsecond line')\n"
    assert exception_message(run_step(tmp_path, script)) == ("ValueError", "first line second line")


def test_an_exception_without_message_gives_its_type(tmp_path: Path) -> None:
    assert exception_message(run_step(tmp_path, "raise MemoryError\n")) == (
        "MemoryError",
        "MemoryError",
    )


def test_a_log_without_traceback_gives_none() -> None:
    assert exception_message("    Epoch 1/3\n    killed\n") is None


def test_failure_falls_back_to_kfp_message_and_names_the_log(tmp_path: Path) -> None:
    log = tmp_path / "ingest.log"
    log.write_text("    nothing useful\n")
    fallback = "Pipeline imgclf-x finished with status FAILURE. Inner task failed: 'ingest'."
    reason = failure("ingest", log, fallback)
    assert reason.error == f"ingest: {fallback}" and reason.log == str(log)
    log.write_text(run_step(tmp_path, STEP_SCRIPT))
    reason = failure("ingest", log, fallback)
    assert reason.error.startswith("ingest: folder:/data/pets is not a directory")
    assert reason.exception == "SourceError"
    assert failure("ingest", tmp_path / "absent.log", fallback).message == fallback
