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

import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from components.ingest.listing import (
    SOURCE_SPLITS,
    SourceError,
    display_name,
    is_uri,
    list_csv,
    list_folder,
    read_local,
    read_uri,
)

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


def given(value: Any) -> Any:
    return value


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


def _folder(root: str, config: Any) -> Source:
    listing = list_folder(root, config)
    read = read_uri if is_uri(listing.root) else read_local
    max_bytes = getattr(config, "max_file_bytes", None)

    def items() -> Iterator[Item]:
        for name, relatives in listing.classes.items():
            label = display_name(name)
            for relative in relatives:
                path = listing.path(name, relative)
                yield Item(
                    key=display_name(f"{name}/{relative}"),
                    label=label,
                    read=partial(read, path, max_bytes),
                    origin=display_name(path),
                )

    total = sum(len(relatives) for relatives in listing.classes.values())
    return Source(items(), total, listing.skipped)


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
    _prepare(builder, spec)
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


def _prepare(builder: Any, spec: str) -> None:
    """Download and prepare a tfds dataset (a no-op once prepared); SourceError, one line,
    saying what to do when that fails (offline, a host that is down, a full disk)."""
    try:
        builder.download_and_prepare()
    except Exception as exc:  # requests' ConnectionError, tfds' DownloadError, OSError, ...
        root = getattr(builder, "_data_dir_root", None) or "TFDS_DATA_DIR"
        reason = " ".join(str(exc).split()) or "no message"
        reason = reason if len(reason) <= 240 else f"{reason[:240]}..."
        raise SourceError(
            f"tfds:{spec} could not be downloaded and prepared ({type(exc).__name__}: {reason}); "
            f"give this machine network access, or prepare it where there is network "
            f"(`tfds build {spec.replace(':', '/')}`) and copy the folder it writes into {root} "
            "(or set TFDS_DATA_DIR), or use data.source=folder:PATH with the images"
        ) from None


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
