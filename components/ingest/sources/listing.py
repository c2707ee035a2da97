"""Listing local and `gs://` sources without reading a file, and reading one file safely.

The folder and CSV source kinds (components/ingest/sources/) list through `list_folder` and
`list_csv` when ingest opens them, when the data preflight checks them and when the snapshot
hashes them, so what the preflight checks is what ingest reads. An item's bytes are read by
`read_local` (components/common/files.py, shared with predict) / `read_uri`: regular files
only (links resolved), at most `data.max_file_bytes`; anything else raises FileRejected with
the reason it is quarantined for.
"""

from __future__ import annotations

import csv
import io
import os
import posixpath
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from components.common.files import capped_read, display_name, read_local

SOURCE_SPLITS = ("train", "validation", "test")


class SourceError(ValueError):
    """The source cannot be read; the message says what to fix."""


def is_uri(path: str) -> bool:
    return "://" in path


def read_uri(uri: str, max_bytes: int | None = None) -> bytes:
    import tensorflow as tf

    with tf.io.gfile.GFile(uri, "rb") as file:
        return capped_read(file, file.size(), max_bytes)


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
            entries = self._scan(path)
            names = list(entries)
            folders = {n for n, is_folder in entries.items() if is_folder}
        if skipped is not None:
            for name in names:
                if name.startswith("."):
                    skipped["hidden folders" if name in folders else "hidden files"] += 1
                elif name not in folders:
                    skipped["files outside the class folders"] += 1
        return sorted(n for n in folders if not n.startswith("."))

    def _scan(self, path: str) -> dict[str, bool]:
        """Name -> whether it is a folder (links followed), for each entry of `path`."""
        try:
            with os.scandir(path) as entries:
                return {entry.name: _is_folder(entry) for entry in entries}
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
            for name, is_folder in self._scan(folder).items():
                joined = f"{relative}/{name}" if relative else name
                full = os.path.join(folder, name)
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


def _is_folder(entry: os.DirEntry[str]) -> bool:
    """Whether the entry is a folder or a link to one (from the listing's file type, without a
    stat, except for links); a link that loops onto itself is not."""
    try:
        return entry.is_dir()
    except OSError:
        return False


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


class Listings:
    """Each local source listed once before compiling: the data preflight, the class count and
    the data snapshot read the same listing, so they agree about what a source holds and a
    large folder is walked once. A listing that fails is not kept (the next reader says why)."""

    def __init__(self) -> None:
        self._folders: dict[str, FolderListing] = {}
        self._manifests: dict[str, list[CsvRow]] = {}

    def folder(self, root: str, config: Any) -> FolderListing:
        if root not in self._folders:
            self._folders[root] = list_folder(root, config)
        return self._folders[root]

    def csv(self, file: str, config: Any) -> list[CsvRow]:
        if file not in self._manifests:
            self._manifests[file] = list_csv(file, config)
        return self._manifests[file]
