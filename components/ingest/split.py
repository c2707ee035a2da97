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

    `items` are (key, label, source_split). Items of the source's own validation or test split
    keep it. The others form a pool that, within each class, is ranked by key hash: the first
    `test` fraction goes to test (only when the source has no test split), the next `validation`
    fraction to validation (only when it has no validation split), the rest to train. The same
    keys give the same splits on every run and machine; no hash depends on the process.
    """
    by_class: dict[str, list[str]] = defaultdict(list)
    assignment: dict[str, str] = {}
    for key, label, source_split in items:
        if source_split in ("validation", "test"):
            assignment[key] = source_split
        else:
            by_class[label].append(key)
    source_splits = set(assignment.values())
    for _, keys in sorted(by_class.items()):
        keys.sort(key=key_hash)
        n = len(keys)
        n_test = 0 if "test" in source_splits else _count(n, test)
        n_validation = 0 if "validation" in source_splits else _count(n, validation)
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
