"""What every source kind answers, and the items a source yields.

A kind is one object per `data.source` scheme (`folder:`, `tfds:`, ...). It is asked about the
part after the scheme (`rest`): is it a source this kind reads (`check`), which local path it
names (`resolve_relative`, `host_paths`, `visible`), what it holds (`open`), which classes can be
listed before ingest (`listed_classes`, `class_names`) and what its data snapshot hashes
(`snapshot`). Kinds import their heavy libraries (TensorFlow, tensorflow-datasets, datasets,
scikit-learn, numpy) inside these methods: the table is imported by the command line.

A source never holds the decoded images: an item's `read()` returns the encoded bytes (or a
numpy array for array-backed sources). `read` is a picklable callable so that the bytes can be
read in a worker process; items of streamed sources (tfds) carry their bytes until decoded.
"""

from __future__ import annotations

import abc
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from components.ingest.sources.hashing import Hash, Lister
from components.ingest.sources.listing import Listings, SourceError, is_uri
from components.spec import DataConfig

if TYPE_CHECKING:
    import numpy as np

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


def given(value: Any) -> Any:
    """A picklable reader of a value the item already holds (bound with functools.partial)."""
    return value


@dataclass
class SnapshotContext:
    """What a kind's snapshot writes into and reads from."""

    data: DataConfig
    digest: Hash
    lister: Lister  # gs:// listings
    listings: Listings  # local listings the data preflight made
    notes: list[str]  # what could not be looked at, and why


class SourceKind(abc.ABC):
    """One `data.source` scheme. `rest` is always the non-empty part after `scheme:`."""

    scheme: ClassVar[str]
    example: ClassVar[str]  # a whole source string, shown in the error for an unknown source

    def check(self, rest: str) -> None:
        """Raise SourceError when `rest` is not a source of this kind (before anything runs)."""
        return None  # any non-empty rest, unless the kind knows better

    def resolve_relative(self, rest: str, folder: Path) -> str:
        """`rest` with a relative local path read from `folder` (the experiment file's)."""
        return rest

    def host_paths(self, rest: str, data: DataConfig) -> list[str]:
        """The files and folders of this machine the source reads (some may not exist)."""
        return []

    def visible(self, rest: str, not_here: tuple[str, ...]) -> str | None:
        """`rest` as this machine lists it, None when it exists only where the steps run
        (`not_here`: path prefixes of the machines the steps run on)."""
        return rest

    @abc.abstractmethod
    def open(self, rest: str, config: Any) -> Source:
        """The source's items; errors in the string or the layout are raised here (SourceError)."""

    @abc.abstractmethod
    def listed_classes(
        self, rest: str, data: DataConfig, not_here: tuple[str, ...], listings: Listings
    ) -> set[str] | None:
        """The data preflight: the class names (before label_map) a listing finds without
        decoding an image, None when they cannot be listed here. SourceError for a problem."""

    def class_names(
        self, rest: str, data: DataConfig, not_here: tuple[str, ...], listings: Listings
    ) -> set[str] | None:
        """The class names for the class count before ingest, None when not cheaply knowable;
        never raises (the preflight reports what is wrong)."""
        try:
            return self.listed_classes(rest, data, not_here, listings)
        except (SourceError, OSError):
            return None

    @abc.abstractmethod
    def snapshot(self, rest: str, context: SnapshotContext) -> int | None:
        """Hash what the source holds into `context.digest`; the files or objects listed, None
        where the source has no file listing. SourceError or SnapshotError for a problem."""


class PathKind(SourceKind):
    """A kind whose `rest` is a local path or a URI (`gs://...`) of one file or folder."""

    def resolve_relative(self, rest: str, folder: Path) -> str:
        if is_uri(rest):
            return rest
        path = Path(rest).expanduser()
        return rest if path.is_absolute() else str((folder / path).resolve())

    def host_paths(self, rest: str, data: DataConfig) -> list[str]:
        return [] if is_uri(rest) else [rest]

    def visible(self, rest: str, not_here: tuple[str, ...]) -> str | None:
        return None if rest.startswith(not_here) else rest

    def elsewhere(self, rest: str, not_here: tuple[str, ...]) -> bool:
        """Whether listing `rest` needs the network or the machine the steps run on."""
        return is_uri(rest) or rest.startswith(not_here)
