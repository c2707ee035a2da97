"""Data snapshot speed on 10,000 and 100,000 files, beside the bare listing it is built on.

For each size, a generated class-per-folder tree of small files; side A is the snapshot the CLI
takes before compiling (`components.ingest.snapshot.take_snapshot`: walk, stat, hash), side B a
bare `os.walk` + `os.stat` of the same tree (the floor any listing pays). Sides alternate A B A B
after a warm-up; the figures are medians with min-max. Goal: under 3 s for 100,000 files.

    python benchmarks/snapshot.py [--sizes 10000 100000] [--rounds 5] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from components.ingest.snapshot import take_snapshot
from components.spec import DataConfig

GOAL_SECONDS = 3.0
CLASSES = 10
PER_FOLDER = 500  # files per leaf folder, as a class folder split into parts


def generate(root: Path, count: int) -> Path:
    """`count` 64-byte files under root/<class>/<part>/ (kept if already there)."""
    tree = root / f"tree-{count}"
    marker = tree / ".complete"
    if marker.exists():
        return tree
    payload = os.urandom(64)
    for index in range(count):
        folder = tree / f"class{index % CLASSES}" / f"part{index // (CLASSES * PER_FOLDER)}"
        if index < CLASSES * PER_FOLDER or index % (CLASSES * PER_FOLDER) < CLASSES:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{index:07d}.png").write_bytes(payload)
    marker.touch()
    return tree


def bare_listing(tree: Path) -> int:
    count = 0
    for folder, _, files in os.walk(tree):
        for name in files:
            os.stat(os.path.join(folder, name))
            count += 1
    return count


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} s ({min(values):.3f}-{max(values):.3f})"


def measure(tree: Path, count: int, rounds: int) -> bool:
    config = DataConfig(source=f"folder:{tree}")
    snapshot = take_snapshot(config)
    assert snapshot.files == count, (snapshot.files, count)
    bare_listing(tree)  # warm-up: both sides then read a warm directory cache
    sides: dict[str, list[float]] = {"snapshot": [], "listing": []}
    for _ in range(rounds):
        sides["snapshot"].append(timed(lambda: take_snapshot(config)))
        sides["listing"].append(timed(lambda: bare_listing(tree)))
    ratios = [a / b for a, b in zip(sides["snapshot"], sides["listing"], strict=True)]
    median = statistics.median(sides["snapshot"])
    print(f"{count:,} files")
    print(
        f"  snapshot     {summary(sides['snapshot'])}  {count / median:,.0f} files/s"
        f"  ({snapshot.describe()})"
    )
    print(
        f"  bare listing {summary(sides['listing'])}"
        f"  {count / statistics.median(sides['listing']):,.0f} files/s"
    )
    print(
        f"  snapshot / listing: {statistics.median(ratios):.2f}x "
        f"({min(ratios):.2f}-{max(ratios):.2f})"
    )
    return median < GOAL_SECONDS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workdir", type=Path, help="keep the generated trees here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="snapshot-bench-") as scratch:
        root = args.workdir or Path(scratch)
        results = [measure(generate(root, count), count, args.rounds) for count in args.sizes]
    largest = max(args.sizes)
    verdict = "met" if results[args.sizes.index(largest)] else "MISSED"
    print(f"goal: {largest:,} files in under {GOAL_SECONDS:.0f} s: {verdict}")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
