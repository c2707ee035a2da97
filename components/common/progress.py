"""Progress lines for long steps: a live bar on a terminal, a line every few percent in logs."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], total: int, label: str, every: float = 0.1) -> Iterator[T]:
    """Yield `items`, reporting progress to stderr (in place on a TTY, else every 10%)."""
    tty = sys.stderr.isatty()
    start = time.monotonic()
    next_report = every
    for done, item in enumerate(items, start=1):
        yield item
        fraction = done / total if total else 1.0
        if tty:
            bar = "#" * int(30 * fraction)
            sys.stderr.write(f"\r{label}: [{bar:<30}] {done}/{total}")
            sys.stderr.flush()
        elif fraction >= next_report or done == total:
            rate = done / max(time.monotonic() - start, 1e-9)
            print(
                f"{label}: {done}/{total} ({fraction:.0%}, {rate:.0f}/s)",
                file=sys.stderr,
                flush=True,
            )
            while next_report <= fraction:
                next_report += every
    if tty:
        sys.stderr.write("\n")
