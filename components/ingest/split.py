"""Deterministic, stratified splits from a hash of each item's stable key."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def assign_splits(
    items: Iterable[tuple[str, str, str | None]], validation: float, test: float
) -> dict[str, str]:
    """Map each key to train/validation/test.

    `items` are (key, label, source_split). Within each class, keys are ranked by their hash; the
    first `test` fraction goes to test (unless the source has its own test split), the next
    `validation` fraction to validation. The same keys give the same splits on every machine.
    """
    by_class: dict[tuple[str, str], list[str]] = defaultdict(list)
    assignment: dict[str, str] = {}
    has_source_test = False
    for key, label, source_split in items:
        if source_split == "test":
            assignment[key] = "test"
            has_source_test = True
        else:
            by_class[(label, "pool")].append(key)
    for (_, _), keys in sorted(by_class.items()):
        keys.sort(key=key_hash)
        n = len(keys)
        n_test = 0 if has_source_test else _count(n, test)
        n_validation = _count(n, validation)
        for rank, key in enumerate(keys):
            if rank < n_test:
                assignment[key] = "test"
            elif rank < n_test + n_validation:
                assignment[key] = "validation"
            else:
                assignment[key] = "train"
    return assignment


def _count(n: int, fraction: float) -> int:
    if fraction <= 0 or n < 3:
        return 0
    return max(1, round(n * fraction))
