"""Listing local and `gs://` sources without reading a file, and reading one file safely.

The folder and CSV sources (sources.py) and the data preflight (preflight.py) list through
`list_folder` and `list_csv`, so what the preflight checks is what ingest reads. An item's
bytes are read by `read_local` / `read_uri`: regular files only (links resolved), at most
`data.max_file_bytes`; anything else raises FileRejected with the reason it is quarantined for.
"""

from __future__ import annotations

import csv
import io
import os
import posixpath
import stat
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from components.ingest.validate import FileRejected

SOURCE_SPLITS = ("train", "validation", "test")


class SourceError(ValueError):
    """The source cannot be read; the message says what to fix."""


def is_uri(path: str) -> bool:
    return "://" in path


def read_local(path: str, max_bytes: int | None = None) -> bytes:
    """The bytes of the regular file at `path` (links resolved), at most `max_bytes` of them.

    Anything else (a named pipe, a device, a folder, a broken link) raises FileRejected
    before a byte is read, so that a pipe never blocks and /dev/zero never fills the memory.
    """
    try:
        # O_NONBLOCK: opening a named pipe swapped in after the check must not wait for a writer.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        if os.path.islink(path):
            raise FileRejected("unreadable", f"broken link to {os.readlink(path)!r}") from None
        raise
    with os.fdopen(descriptor, "rb") as file:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise FileRejected("not a regular file", f"a {file_kind(info.st_mode)}")
        return _capped(file, info.st_size, max_bytes)


def read_uri(uri: str, max_bytes: int | None = None) -> bytes:
    import tensorflow as tf

    with tf.io.gfile.GFile(uri, "rb") as file:
        return _capped(file, file.size(), max_bytes)


def _capped(file: Any, size: int, max_bytes: int | None) -> bytes:
    if max_bytes is not None and size > max_bytes:
        raise FileRejected("too large", f"{size:,} bytes > data.max_file_bytes = {max_bytes:,}")
    data = file.read() if max_bytes is None else file.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:  # it grew while being read
        raise FileRejected("too large", f"more than data.max_file_bytes = {max_bytes:,} bytes")
    return data


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    kinds = (
        (stat.S_ISFIFO, "named pipe"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISDIR, "folder"),
    )
    return next((name for test, name in kinds if test(mode)), "special file")


def display_name(name: str) -> str:
    """`name` as text that round-trips: bytes that are not UTF-8 (os.fsdecode's surrogates)
    become `\\xNN` escapes, so keys, reports and CSVs can always be written."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class _Files:
    """The few file-system calls the folder and csv sources need, local or through tf.io.gfile."""

    def __init__(self, uri: bool):
        self.uri = uri
        if uri:
            try:
                import tensorflow as tf
            except ImportError:  # pragma: no cover - the tf extra is installed with the step
                raise SourceError(
                    "reading gs:// (or other URI) sources needs TensorFlow's tf.io.gfile: "
                    "pip install 'image-classification-pipelines[tf]'"
                ) from None
            self.gfile = tf.io.gfile

    def join(self, *parts: str) -> str:
        return posixpath.join(*parts) if self.uri else os.path.join(*parts)

    def isdir(self, path: str) -> bool:
        return self.gfile.isdir(path) if self.uri else os.path.isdir(path)

    def isfile(self, path: str) -> bool:
        if self.uri:
            return self.gfile.exists(path) and not self.gfile.isdir(path)
        return os.path.isfile(path)

    def subdirs(self, path: str, skipped: Counter[str] | None = None) -> list[str]:
        """The non-hidden subfolders of `path` (links to folders included), sorted.

        Given `skipped`, hidden entries and files beside the subfolders are counted there.
        """
        if self.uri:
            names = [n.rstrip("/") for n in self.gfile.listdir(path)]
            folders = {n for n in names if self.gfile.isdir(self.join(path, n))}
        else:
            names = self._scan(path)
            folders = {n for n in names if os.path.isdir(os.path.join(path, n))}
        if skipped is not None:
            for name in names:
                if name.startswith("."):
                    skipped["hidden folders" if name in folders else "hidden files"] += 1
                elif name not in folders:
                    skipped["files outside the class folders"] += 1
        return sorted(n for n in folders if not n.startswith("."))

    def _scan(self, path: str) -> list[str]:
        try:
            return [entry.name for entry in os.scandir(path)]
        except OSError as exc:
            raise SourceError(
                f"{display_name(path)} cannot be listed ({exc.strerror or exc}); "
                "check that it exists and that this user may read it"
            ) from None

    def files_under(
        self, path: str, skipped: Counter[str], visited: set[tuple[int, int]] | None = None
    ) -> list[str]:
        """Every non-hidden file below `path`, as sorted paths relative to it (posix separators).

        Hidden entries are counted in `skipped`. Links to folders are followed, once: a link to
        a folder in `visited` or listed already (a loop, another class's folder, a second way
        in) is counted instead.
        """
        if self.uri:
            return self._files_under_uri(path, skipped)
        found = []
        visited = visited if visited is not None else set()
        visited.add(_identity(path))
        pending = [""]
        while pending:
            relative = pending.pop()
            folder = os.path.join(path, relative) if relative else path
            for name in self._scan(folder):
                joined = f"{relative}/{name}" if relative else name
                full = os.path.join(folder, name)
                is_folder = os.path.isdir(full)
                if name.startswith("."):
                    skipped["hidden folders" if is_folder else "hidden files"] += 1
                elif not is_folder:
                    found.append(joined)  # regular or not: read() says why it is not an image
                elif _identity(full) in visited:
                    skipped["links to a folder already listed"] += 1
                else:
                    visited.add(_identity(full))
                    pending.append(joined)
        return sorted(found)

    def _files_under_uri(self, path: str, skipped: Counter[str]) -> list[str]:
        found = []
        for folder, dirs, files in self.gfile.walk(path):
            hidden = [d for d in dirs if d.rstrip("/").startswith(".")]
            skipped["hidden folders"] += len(hidden)
            dirs[:] = [d for d in dirs if d not in hidden]
            relative = posixpath.relpath(folder, path)
            for name in files:
                if name.startswith("."):
                    skipped["hidden files"] += 1
                else:
                    found.append(name if relative == "." else f"{relative}/{name}")
        return sorted(found)

    def reader(self, path: str, max_bytes: int | None) -> Callable[[], bytes]:
        return partial(read_uri if self.uri else read_local, path, max_bytes)

    def read_text(self, path: str) -> str:
        if self.uri:
            with self.gfile.GFile(path, "r") as file:
                return file.read()
        return Path(path).read_text(encoding="utf-8-sig")


def _identity(path: str) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_dev, info.st_ino


@dataclass
class FolderListing:
    """What a `folder:` source holds, without reading a file: the preflight and ingest share it."""

    root: str  # the folder that holds the class folders (a lone wrapper folder entered)
    classes: dict[str, list[str]]  # class folder name -> files below it, relative, sorted
    skipped: Counter[str]

    def path(self, name: str, relative: str) -> str:
        """Where the file `relative` of class folder `name` is."""
        return _Files(is_uri(self.root)).join(self.root, name, *relative.split("/"))


def list_folder(root: str, config: Any) -> FolderListing:
    """List `folder:root`; raise SourceError when it cannot make a classification dataset."""
    files = _Files(is_uri(root))
    root = root.rstrip("/") if files.uri else root
    shown = display_name(root)
    if not files.isdir(root):
        what = "does not exist" if not files.isfile(root) else "is a file, not a folder"
        raise SourceError(f"folder:{shown} {what}; expected {shown}/<class>/<image files>")
    skipped: Counter[str] = Counter()
    class_names = files.subdirs(root, skipped)
    # Enter a lone wrapper folder (Kaggle's PetImages): one class is not a classification task.
    while len(class_names) == 1 and files.subdirs(files.join(root, class_names[0])):
        root = files.join(root, class_names[0])
        skipped = Counter()
        class_names = files.subdirs(root, skipped)
    shown = display_name(root)
    if not class_names:
        raise SourceError(
            f"folder:{shown} has no class subfolders; expected "
            f"{shown}/<class>/<image files>, one folder per class"
        )
    listing = {}
    # A link to the source folder or to another class's folder is never followed.
    visited = set() if files.uri else {_identity(files.join(root, n)) for n in ("", *class_names)}
    for name in class_names:
        found: Counter[str] = Counter()
        listing[name] = files.files_under(files.join(root, name), found, visited)
        if not listing[name] and wanted_class(display_name(name), config):
            hidden = f" (only skipped entries: {_counted(found)})" if found else ""
            raise SourceError(
                f"folder:{shown}: class folder '{display_name(name)}' has no files"
                f"{hidden}; add its images, remove the folder, or leave the class out with "
                "data.classes"
            )
        skipped.update(found)
    return FolderListing(root, listing, skipped)


def wanted_class(name: str, config: Any) -> bool:
    """Whether a source class survives data.label_map and data.classes."""
    label_map = getattr(config, "label_map", None)
    if label_map:
        if name not in label_map:
            return False
        name = label_map[name]
    classes = getattr(config, "classes", None)
    return classes is None or name in classes


def _counted(counts: Counter[str]) -> str:
    return ", ".join(f"{what}: {n}" for what, n in sorted(counts.items()))


@dataclass(frozen=True)
class CsvRow:
    line: int
    path: str  # as written in the CSV (the item's key)
    label: str
    split: str | None
    location: str  # where the file is: the path resolved against the CSV's folder


def list_csv(file: str, config: Any) -> list[CsvRow]:
    """The rows of a `csv:` manifest, checked; raise SourceError naming what to fix."""
    files = _Files(is_uri(file))
    if not files.isfile(file):
        what = "is a folder, not a CSV file" if files.isdir(file) else "does not exist"
        raise SourceError(f"csv:{file} {what}; give the manifest's path")
    try:
        text = files.read_text(file)
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"csv:{file} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at "
            f"offset {exc.start}); save the manifest as UTF-8"
        ) from None
    rows = list(csv.DictReader(io.StringIO(text)))
    header = list(rows[0].keys()) if rows else []
    path_column = "path" if "path" in header else config.image_column
    label_column = config.label_column
    missing = [c for c in (path_column, label_column) if c not in header]
    if missing:
        raise SourceError(
            f"csv:{file} has columns {header} but not {missing}: it needs a path column ('path', "
            f"or data.image_column: now '{config.image_column}') and a label column "
            f"(data.label_column: now '{label_column}')"
        )
    base = posixpath.dirname(file) if files.uri else os.path.dirname(os.path.abspath(file))
    manifest = []
    for line, row in enumerate(rows, start=2):
        path, label = (row[path_column] or "").strip(), (row[label_column] or "").strip()
        split = (row.get("split") or "").strip().lower() or None
        if not path or not label:
            raise SourceError(
                f"csv:{file} line {line}: empty {path_column if not path else label_column}"
            )
        if split is not None and split not in SOURCE_SPLITS:
            raise SourceError(
                f"csv:{file} line {line}: split '{split}' is not one of {', '.join(SOURCE_SPLITS)}"
            )
        location = path if is_uri(path) or os.path.isabs(path) else files.join(base, path)
        manifest.append(CsvRow(line, path, label, split, location))
    return manifest
