"""The Quarantine CSV (`key,source,reason` of every rejected item), written as items are
rejected, with the count and a few examples of each reason for the data report."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path
from types import TracebackType

from components.common.dataset import QUARANTINE_FIELDS

EXAMPLES_PER_REASON = 8


class Quarantine:
    """The Quarantine CSV, written as items are rejected, with counts and examples per reason."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("w", newline="", encoding="utf-8", errors="backslashreplace")
        self._writer = csv.writer(self._file)
        self._writer.writerow(QUARANTINE_FIELDS)
        self.count = 0
        self.reasons: Counter[str] = Counter()
        self.examples: dict[str, list[tuple[str, str, str]]] = defaultdict(list)

    def add(self, key: str, origin: str, reason: str) -> None:
        self._writer.writerow((key, origin, reason))
        self.count += 1
        code = reason.split(":", 1)[0]
        self.reasons[code] += 1
        if len(self.examples[code]) < EXAMPLES_PER_REASON:
            self.examples[code].append((key, origin, reason))

    def flush(self) -> None:
        self._file.flush()

    def __enter__(self) -> Quarantine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._file.close()
