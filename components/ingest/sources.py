"""Data sources: each yields items with a stable key, a class name and a way to read the bytes.

`data.source` (and each of `data.extra_train_sources`) is one of:

- `sklearn:digits`: the 8x8 digits that ship with scikit-learn (offline).
- `folder:PATH`: `PATH/<class>/**/<image>`, one subfolder per class. PATH may be a URI that
  `tf.io.gfile` reads (`gs://bucket/pets`). A folder whose only subfolder holds the class
  folders is entered, so the Kaggle download (`kagglecatsanddogs_5340/PetImages/{Cat,Dog}`)
  works from either level. Every file is an item, whatever its extension: a file that is not an
  image is quarantined, never silently skipped. Hidden files and folders are skipped and
  counted (`Source.skipped`); links are followed (a link back into a folder already listed is
  counted, not followed again); a named pipe, device or broken link is an item that is
  quarantined with its reason. A class folder with no file is an error naming the class.
  File names that are not valid UTF-8 are read as they are; their keys show the odd bytes
  escaped (`caf\\xe9.jpg`).
- `csv:FILE`: a manifest with a path column (`path`, else `data.image_column`) and a label
  column (`data.label_column`), optionally a `split` column (train, validation or test).
  Relative paths are resolved against the CSV's folder; FILE may be a `gs://` URI.
- `npz:FILE`: arrays `x` and `y`, optionally `x_test`/`y_test` and `class_names`.
- `tfds:NAME[:CONFIG]`: a tensorflow-datasets dataset (mnist, cifar10, cifar100,
  oxford_iiit_pet, caltech_birds2011, cats_vs_dogs, ...), prepared into TFDS's data dir
  (`TFDS_DATA_DIR`) on first use. Columns from `data.image_column` / `data.label_column`.
- `hf:REPO_OR_PATH[:CONFIG]`: a Hugging Face dataset: a folder written by `save_to_disk`, a
  local folder of data files (`train-*.parquet`, `test-*.parquet`, ...), or a Hub dataset id.
  The image column (`data.image_column`) must be an `Image` feature; labels are ClassLabel ids
  (named by the feature), strings or integers; label -1 (unlabelled) is excluded and counted.

The source's own `validation` and `test` splits are honoured; other splits are not read.

A source never holds the decoded images: an item's `read()` returns the encoded bytes (or a
numpy array for array-backed sources). `read` is a picklable callable so that the bytes can be
read in a worker process; items of streamed sources (tfds) carry their bytes until decoded.
"""

from __future__ import annotations

import csv
import io
import os
import posixpath
import stat
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from components.ingest.validate import FileRejected

SOURCE_SPLITS = ("train", "validation", "test")
# Split names of the supported TFDS datasets, for when the builder has no split metadata
# (tfds.testing.mock_data); a prepared dataset lists its own.
TFDS_SPLITS = {
    "mnist": ("train", "test"),
    "cifar10": ("train", "test"),
    "cifar100": ("train", "test"),
    "oxford_iiit_pet": ("train", "test"),
    "caltech_birds2011": ("train", "test"),
    "cats_vs_dogs": ("train",),
}
# Features that name an item better than its position (used in keys and the quarantine report).
TFDS_ID_FEATURES = ("id", "file_name", "image/filename", "filename")
INSTALL_DATA_EXTRA = "pip install 'image-classification-pipelines[data]'"


@dataclass(frozen=True)
class Item:
    key: str  # stable id of the source item: same item -> same key on every run and machine
    label: str | None  # source class name (before label_map); None: unlabelled, excluded
    read: Callable[[], bytes | np.ndarray]  # picklable (functools.partial of a module function)
    origin: str  # where it came from, for the quarantine report
    split: str | None = None  # the source's own split ("train"/"validation"/"test"), if any


@dataclass
class Source:
    """The items of a source, produced lazily, and how many there will be when known up front."""

    items: Iterator[Item]
    total: int | None = None
    # entries of the listing that are not items, e.g. {"hidden files": 3, "link loops": 1}
    skipped: Counter[str] = field(default_factory=Counter)

    def __iter__(self) -> Iterator[Item]:
        return self.items


class SourceError(ValueError):
    """The source cannot be read; the message says what to fix."""


def open_source(source: str, config: Any) -> Source:
    """Open `source` (errors in the source string or its layout are raised here, not later)."""
    scheme, _, rest = source.partition(":")
    readers = {
        "sklearn": _sklearn,
        "folder": _folder,
        "csv": _csv,
        "npz": _npz,
        "tfds": _tfds,
        "hf": _hf,
    }
    if scheme not in readers or not rest:
        raise SourceError(
            f"data source '{source}' is not readable; use one of "
            f"{', '.join(s + ':...' for s in readers)}"
        )
    return readers[scheme](rest, config)


# Picklable readers: an item's `read` is one of these bound with functools.partial.


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


def given(value: Any) -> Any:
    return value


def is_uri(path: str) -> bool:
    return "://" in path


def _sklearn(name: str, config: Any) -> Source:
    if name != "digits":
        raise SourceError(f"sklearn:{name} is not embedded; use sklearn:digits")
    intensities, targets = _load_digits()
    # 0..16 intensities -> 0..255 greyscale
    images = np.round(intensities * (255.0 / 16.0)).astype(np.uint8)

    def items() -> Iterator[Item]:
        for index, (image, target) in enumerate(zip(images, targets, strict=True)):
            yield Item(
                key=f"digits/{index:05d}",
                label=str(int(target)),
                read=partial(given, image),
                origin=f"sklearn:digits[{index}]",
            )

    return Source(items(), len(images))


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """(N x 8 x 8 intensities 0..16, N targets 0..9), as sklearn.datasets.load_digits returns.

    Read from the CSV that scikit-learn ships, without importing scikit-learn (which takes
    seconds to import SciPy and pandas); through load_digits if that file ever moves.
    """
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            table = np.loadtxt(path, delimiter=",")
            return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target


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


def _folder(root: str, config: Any) -> Source:
    listing = list_folder(root, config)
    files = _Files(is_uri(listing.root))
    max_bytes = getattr(config, "max_file_bytes", None)

    def items() -> Iterator[Item]:
        for name, relatives in listing.classes.items():
            label = display_name(name)
            for relative in relatives:
                path = files.join(listing.root, name, *relative.split("/"))
                yield Item(
                    key=display_name(f"{name}/{relative}"),
                    label=label,
                    read=files.reader(path, max_bytes),
                    origin=display_name(path),
                )

    total = sum(len(relatives) for relatives in listing.classes.values())
    return Source(items(), total, listing.skipped)


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


def _csv(file: str, config: Any) -> Source:
    manifest = list_csv(file, config)
    max_bytes = getattr(config, "max_file_bytes", None)

    def items() -> Iterator[Item]:
        for row in manifest:
            read = read_uri if is_uri(row.location) else read_local
            yield Item(
                key=row.path,
                label=row.label,
                read=partial(read, row.location, max_bytes),
                origin=row.location,
                split=row.split,
            )

    return Source(items(), len(manifest))


def _npz(file: str, config: Any) -> Source:
    """`x`/`y` arrays (optionally `x_test`/`y_test` and `class_names`) in one .npz file.

    An .npz archive decompresses whole arrays, so this source holds them in memory: use it
    for small data sets (a folder, csv, tfds or hf source for large ones).
    """
    path = Path(file)
    if not path.is_file():
        what = "is a folder, not an .npz file" if path.is_dir() else "does not exist"
        raise SourceError(f"npz:{file} {what}; give the archive's path")
    with np.load(path, allow_pickle=False) as archive:
        names = set(archive.files)
        if not {"x", "y"} <= names:
            raise SourceError(f"npz:{file} must hold arrays 'x' and 'y'; it has {sorted(names)}")
        class_names = [str(c) for c in archive["class_names"]] if "class_names" in names else None
        parts: list[tuple[str, str, str | None]] = [("x", "y", None)]
        if {"x_test", "y_test"} <= names:
            parts = [("x", "y", "train"), ("x_test", "y_test", "test")]
        arrays = [
            (x_name, archive[x_name], archive[y_name], split) for x_name, y_name, split in parts
        ]
    for x_name, x, y, _ in arrays:
        if len(x) != len(y):
            raise SourceError(
                f"npz:{file}: {x_name} has {len(x)} rows but its labels have {len(y)}"
            )

    def items() -> Iterator[Item]:
        for x_name, x, y, split in arrays:
            for index in range(len(x)):
                label = y[index].item()
                name = class_names[label] if class_names else str(label)
                yield Item(
                    key=f"{x_name}/{index:07d}",
                    label=name,
                    read=partial(given, x[index]),
                    origin=f"npz:{path.name}[{x_name}][{index}]",
                    split=split,
                )

    return Source(items(), sum(len(x) for _, x, _, _ in arrays))


def _tfds(spec: str, config: Any) -> Source:
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise SourceError(f"tfds: sources need tensorflow-datasets: {INSTALL_DATA_EXTRA}") from None
    name, _, builder_config = spec.partition(":")
    full_name = f"{name}/{builder_config}" if builder_config else name
    try:
        builder = tfds.builder(full_name)
    except Exception as exc:  # DatasetNotFoundError, bad config name, ...
        raise SourceError(
            f"tfds:{spec}: {str(exc).splitlines()[0]}; known here: {', '.join(TFDS_SPLITS)}"
        ) from None
    features = builder.info.features
    image_column, label_column = config.image_column, config.label_column
    if not isinstance(_feature(features, image_column), tfds.features.Image):
        images = [k for k, v in features.items() if isinstance(v, tfds.features.Image)]
        raise SourceError(
            f"tfds:{spec} has no image feature '{image_column}' (data.image_column); "
            f"its image features: {images}"
        )
    label_feature = _feature(features, label_column)
    if not isinstance(label_feature, tfds.features.ClassLabel):
        labels = [k for k, v in features.items() if isinstance(v, tfds.features.ClassLabel)]
        raise SourceError(
            f"tfds:{spec} has no class-label feature '{label_column}' (data.label_column); "
            f"its class-label features: {labels}"
        )
    builder.download_and_prepare()
    available = list(builder.info.splits) or list(TFDS_SPLITS.get(name, ("train",)))
    splits = [s for s in SOURCE_SPLITS if s in available]
    if not splits:
        raise SourceError(f"tfds:{spec} has splits {available}, none of {', '.join(SOURCE_SPLITS)}")
    names = list(label_feature.names)
    # caltech_birds2011 numbers its classes and names them in a text feature beside the label.
    name_feature = f"{label_column}_name"
    numbered = names == [str(i) for i in range(len(names))]
    named_by_text = numbered and isinstance(_feature(features, name_feature), tfds.features.Text)
    id_feature = next(
        (f for f in TFDS_ID_FEATURES if isinstance(_feature(features, f), tfds.features.Text)), None
    )
    wanted = {image_column: True, label_column: True}
    for extra in (id_feature, name_feature if named_by_text else None):
        if extra:
            wanted[extra] = True
    decoders = tfds.decode.PartialDecoding(
        wanted, decoders={image_column: tfds.decode.SkipDecoding()}
    )
    known = builder.info.splits
    total = sum(known[s].num_examples for s in splits) if known else None

    def items() -> Iterator[Item]:
        text_names: dict[int, str] = {}
        for split in splits:
            dataset = builder.as_dataset(
                split=split,
                shuffle_files=False,
                decoders=decoders,
                read_config=tfds.ReadConfig(add_tfds_id=True),
            )
            for example in tfds.as_numpy(dataset):
                ident = _text(example[id_feature] if id_feature else example["tfds_id"])
                label = int(example[label_column])
                if named_by_text:
                    class_name = text_names.setdefault(label, _text(example[name_feature]))
                else:
                    class_name = names[label]
                yield Item(
                    key=f"{split}/{ident}",
                    label=class_name,
                    read=partial(given, bytes(example[image_column])),
                    origin=f"tfds:{full_name}/{split}/{ident}",
                    split=split,
                )

    return Source(items(), total)


def _feature(features: Any, name: str | None) -> Any:
    return features[name] if name is not None and name in features else None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _hf(spec: str, config: Any) -> Source:
    try:
        import datasets
    except ImportError:
        raise SourceError(f"hf: sources need Hugging Face datasets: {INSTALL_DATA_EXTRA}") from None
    location, config_name = spec, None
    head, sep, tail = spec.rpartition(":")
    if sep and head and "/" not in tail and not os.path.exists(spec):
        location, config_name = head, tail
    try:
        if os.path.isdir(location) and (
            os.path.exists(os.path.join(location, "dataset_dict.json"))
            or os.path.exists(os.path.join(location, "state.json"))
        ):
            loaded = datasets.load_from_disk(location)
        else:
            loaded = datasets.load_dataset(location, name=config_name)
    except Exception as exc:  # FileNotFoundError, DatasetNotFoundError, offline, ...
        raise SourceError(
            f"hf:{spec} cannot be loaded ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "give a folder written by save_to_disk, a folder of data files or a Hub dataset id"
        ) from None
    parts = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
    splits = [s for s in SOURCE_SPLITS if s in parts]
    if not splits:
        raise SourceError(
            f"hf:{spec} has splits {sorted(parts)}, none of {', '.join(SOURCE_SPLITS)}"
        )
    image_column, label_column = config.image_column, config.label_column
    tables = {}
    for split in splits:
        table = parts[split]
        features = table.features
        missing = [c for c in (image_column, label_column) if c not in features]
        if missing:
            raise SourceError(
                f"hf:{spec} [{split}] has columns {list(features)} but not {missing}; "
                "set data.image_column and data.label_column"
            )
        if not isinstance(features[image_column], datasets.Image):
            raise SourceError(
                f"hf:{spec}: column '{image_column}' is {type(features[image_column]).__name__}, "
                "not an Image feature; set data.image_column to the image column"
            )
        table = table.select_columns([image_column, label_column])
        tables[split] = table.cast_column(image_column, datasets.Image(decode=False))
    label_feature = tables[splits[0]].features[label_column]
    names = list(label_feature.names) if isinstance(label_feature, datasets.ClassLabel) else None

    def items() -> Iterator[Item]:
        for split in splits:
            index = 0
            for batch in tables[split].iter(batch_size=64):
                for image, label in zip(batch[image_column], batch[label_column], strict=True):
                    key = f"{split}/{index:07d}"
                    index += 1
                    if image.get("bytes") is not None:
                        read: Callable[[], bytes] = partial(given, image["bytes"])
                    elif image.get("path"):
                        read = _hf_file(image["path"], location)
                    else:
                        read = partial(given, b"")
                    yield Item(
                        key=key,
                        label=_hf_label(label, names),
                        read=read,
                        origin=f"hf:{spec}/{key}",
                        split=split,
                    )

    return Source(items(), sum(len(t) for t in tables.values()))


def _hf_file(path: str, location: str) -> Callable[[], bytes]:
    if is_uri(path):
        return partial(read_uri, path, None)
    if not os.path.isabs(path) and os.path.isdir(location):
        path = os.path.join(location, path)
    return partial(read_local, path, None)


def _hf_label(value: Any, names: list[str] | None) -> str | None:
    if value is None:
        return None
    if names is not None:
        return names[value] if 0 <= value < len(names) else None
    if isinstance(value, int | np.integer) and value < 0:
        return None
    return str(value)
