"""Progress of long steps, for whoever runs the step.

`progress()` wraps an iterable and reports every 10% (a step's output is a log, never a
terminal). `emit()` writes one machine-readable event line, only when the runner asked for them
(the local target sets `EVENTS_ENV`): the local console turns them into its task lines and
progress bars, and keeps them out of the logs people read.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

EVENTS_ENV = "IMGCLF_EVENTS"
EVENT_PREFIX = "::imgclf-event::"
# Batch events are throttled: a live bar needs a few updates a second, not one per batch.
BATCH_EVENT_SECONDS = 0.25


def events_enabled() -> bool:
    return os.environ.get(EVENTS_ENV) == "1"


def emit(kind: str, **fields: Any) -> None:
    """One event line on stdout (`kind` is `epochs`, `batch` or `epoch`), if events are on."""
    if events_enabled():
        sys.stdout.write(EVENT_PREFIX + json.dumps({"event": kind, **fields}) + "\n")
        sys.stdout.flush()


def parse_event(line: str) -> dict[str, Any] | None:
    """The event a line carries, or None for an ordinary output line."""
    if not line.startswith(EVENT_PREFIX):
        return None
    try:
        event = json.loads(line[len(EVENT_PREFIX) :])
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None


class EpochEvents:
    """Events of one training: its size, throttled batch progress and each finished epoch.

    Epochs are counted from 1 over all phases; `steps` is the number of batches per epoch.
    """

    def __init__(self, epochs: int, steps: int, first_epoch: int = 0) -> None:
        self.epochs, self.steps = epochs, steps
        self.epoch = first_epoch
        self._last_batch = 0.0
        emit("epochs", epochs=epochs, steps=steps, done=first_epoch)

    def batch(self, step: int) -> None:
        now = time.monotonic()
        if now - self._last_batch >= BATCH_EVENT_SECONDS:
            self._last_batch = now
            emit("batch", epoch=self.epoch + 1, step=step, steps=self.steps)

    def epoch_end(self, metrics: dict[str, float]) -> None:
        self.epoch += 1
        shown = {k: round(float(v), 6) for k, v in metrics.items()}
        emit("epoch", epoch=self.epoch, epochs=self.epochs, metrics=shown)


def progress(items: Iterable[T], total: int, label: str, every: float = 0.1) -> Iterator[T]:
    """Yield `items`, printing `label: done/total` every `every` of the way."""
    start = time.monotonic()
    next_report = every
    for done, item in enumerate(items, start=1):
        yield item
        fraction = done / total if total else 1.0
        if fraction >= next_report or done == total:
            rate = done / max(time.monotonic() - start, 1e-9)
            print(f"{label}: {done}/{total} ({fraction:.0%}, {rate:.0f}/s)", flush=True)
            while next_report <= fraction:
                next_report += every
