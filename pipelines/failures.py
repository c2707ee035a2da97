"""Why a step failed: its own exception, read from its log, in place of KFP's wrapper message.

kfp.local reports a failed step as "Pipeline ... finished with status FAILURE. Inner task failed:
'ingest'"; the reason is the last exception in that step's own output. `exception_message`
finds it; `failure` puts step, reason and log path together for the summary and `--json`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

TRACEBACK = "Traceback (most recent call last):"
# `module.sub.ErrorType: message` or a bare `ErrorType` (an exception raised without a message)
EXCEPTION_LINE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::\s?(?P<message>.*))?$")
CHAINED = (
    "During handling of the above exception",
    "The above exception was the direct cause",
)


@dataclass(frozen=True)
class StepFailure:
    step: str
    message: str  # the step's own exception message (or KFP's, when the log has none)
    exception: str | None  # the exception's type, unqualified
    log: str | None  # path of the step's full log

    @property
    def error(self) -> str:
        """One line for the summary and `--json`: `<step>: <the step's own message>`."""
        return f"{self.step}: {self.message}"


def exception_message(log_text: str) -> tuple[str, str] | None:
    """(exception type, message) of the last traceback in `log_text`, or None without one.

    Frames are indented; the first unindented line after them is the exception. A message that
    spans lines runs to the next blank line.
    """
    lines = [line.rstrip() for line in log_text.splitlines()]
    starts = [i for i, line in enumerate(lines) if line.strip() == TRACEBACK]
    if not starts:
        return None
    # kfp.local indents a step's output; measure indentation relative to the traceback line
    start = starts[-1]
    margin = len(lines[start]) - len(lines[start].lstrip())
    for index in range(start + 1, len(lines)):
        line = lines[index][margin:] if lines[index][:margin].isspace() else lines[index]
        if not line or line[0].isspace():
            continue
        match = EXCEPTION_LINE.match(line)
        if not match:
            return None
        message = [match["message"] or ""]
        for following in lines[index + 1 :]:
            text = following[margin:] if following[:margin].isspace() else following
            if not text.strip() or text.startswith(CHAINED) or text.startswith("Task "):
                break
            message.append(text.strip())
        kind = match["type"].rsplit(".", 1)[-1]
        return kind, " ".join(part for part in message if part).strip() or kind
    return None


def failure(step: str, log: Path | None, fallback: str) -> StepFailure:
    """The failure of `step`, its reason read from `log` when the log holds a traceback."""
    found = None
    if log is not None and log.is_file():
        found = exception_message(log.read_text(encoding="utf-8", errors="replace"))
    if found is None:
        return StepFailure(step, fallback, None, str(log) if log else None)
    kind, message = found
    return StepFailure(step, message, kind, str(log))
