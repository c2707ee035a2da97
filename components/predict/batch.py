"""Batch prediction over a folder of any size: files are found, scored and written as a stream.

Nothing grows with the number of files: the folder is walked lazily (one directory listing at a
time), scored in batches, and each row is written and flushed before the next batch is read.
"""

from __future__ import annotations

import csv
import glob
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from components.common.pixels import IMAGE_SUFFIXES

OUTPUT_SUFFIXES = (".csv", ".jsonl")


def walk_images(folder: Path) -> Iterator[Path]:
    """Image files under `folder`, recursively, in sorted order, without listing it all at once.

    Links to folders are not followed (no loops); anything else named like an image is yielded,
    pipes and devices included: reading it gives the row its reason (pixels.load_image)."""
    for directory, subdirectories, files in os.walk(folder):
        subdirectories.sort()
        for name in sorted(files):
            if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                yield Path(directory) / name


def stream_inputs(arguments: Sequence[str]) -> Iterator[Path | tuple[str, str]]:
    """Each argument's files in order, or `(argument, problem)` for one that matches nothing."""
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = False
            for file in walk_images(path):
                found = True
                yield file
            if not found:
                yield argument, f"folder has no image files ({', '.join(sorted(IMAGE_SUFFIXES))})"
        elif path.is_file():
            yield path
        elif any(c in argument for c in "*?["):
            found = False
            for match in glob.iglob(argument, recursive=True):
                if Path(match).is_file():
                    found = True
                    yield Path(match)
            if not found:
                yield argument, "pattern matched no files"
        else:
            yield argument, "no such file or folder"


def count_inputs(arguments: Sequence[str]) -> int:
    """How many files `stream_inputs` will yield (a first, counting-only pass)."""
    return sum(1 for item in stream_inputs(arguments) if isinstance(item, Path))


class RowWriter:
    """predictions.csv (path, class_1, probability_1, ..., reason) or .jsonl, one row per file."""

    def __init__(self, handle: IO[str], suffix: str, top_k: int):
        self.handle, self.jsonl = handle, suffix == ".jsonl"
        self.rows = self.scored = self.unreadable = 0
        if not self.jsonl:
            self.csv = csv.writer(handle)
            ranks = range(1, top_k + 1)
            self.csv.writerow(
                ["path", *(f"{kind}_{i}" for i in ranks for kind in ("class", "probability"))]
                + ["reason"]
            )
            self.width = 2 * top_k

    def write(self, outcome: dict[str, Any]) -> None:
        self.rows += 1
        if "error" in outcome:
            self.unreadable += 1
        else:
            self.scored += 1
        if self.jsonl:
            self.handle.write(json.dumps(outcome) + "\n")
            return
        if "error" in outcome:
            self.csv.writerow([outcome["path"], *([""] * self.width), outcome["error"]])
            return
        cells: list[Any] = [outcome["path"]]
        for entry in outcome["top"]:
            cells += [entry["class"], f"{entry['probability']:.6f}"]
        self.csv.writerow(cells + [""] * (self.width - (len(cells) - 1)) + [""])

    def write_all(self, outcomes: Iterable[dict[str, Any]]) -> None:
        for outcome in outcomes:
            self.write(outcome)
