"""`hf:REPO_OR_PATH[:CONFIG]`: a Hugging Face dataset: a folder written by `save_to_disk`, a
local folder of data files (`train-*.parquet`, `test-*.parquet`, ...), or a Hub dataset id.

The image column (`data.image_column`) must be an `Image` feature; labels are ClassLabel ids
(named by the feature), strings or integers; label -1 (unlabelled) is excluded and counted.
The source's own `validation` and `test` splits are honoured; other splits are not read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from components.ingest.sources.base import (
    INSTALL_DATA_EXTRA,
    Item,
    SnapshotContext,
    Source,
    SourceKind,
    given,
)
from components.ingest.sources.hashing import hash_tree
from components.ingest.sources.listing import (
    SOURCE_SPLITS,
    Listings,
    SourceError,
    is_uri,
    read_local,
    read_uri,
)
from components.spec import DataConfig


class HfKind(SourceKind):
    scheme = "hf"
    example = "hf:owner/name"

    def host_paths(self, rest: str, data: DataConfig) -> list[str]:
        return [] if is_uri(rest) else [rest]

    def open(self, rest: str, config: Any) -> Source:
        try:
            import datasets
        except ImportError:
            raise SourceError(
                f"hf: sources need Hugging Face datasets: {INSTALL_DATA_EXTRA}"
            ) from None
        location, config_name = _location(rest)
        try:
            if os.path.isdir(location) and (
                os.path.exists(os.path.join(location, "dataset_dict.json"))
                or os.path.exists(os.path.join(location, "state.json"))
            ):
                loaded = datasets.load_from_disk(location)
            else:
                loaded = datasets.load_dataset(location, name=config_name)
        except Exception as exc:  # FileNotFoundError, DatasetNotFoundError, offline, ...
            first_line = str(exc).splitlines()[0] if str(exc) else ""
            raise SourceError(
                f"hf:{rest} cannot be loaded ({type(exc).__name__}: {first_line}); "
                "give a folder written by save_to_disk, a folder of data files or a Hub dataset id"
            ) from None
        parts = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
        splits = [s for s in SOURCE_SPLITS if s in parts]
        if not splits:
            raise SourceError(
                f"hf:{rest} has splits {sorted(parts)}, none of {', '.join(SOURCE_SPLITS)}"
            )
        image_column, label_column = config.image_column, config.label_column
        tables = {}
        for split in splits:
            table = parts[split]
            features = table.features
            missing = [c for c in (image_column, label_column) if c not in features]
            if missing:
                raise SourceError(
                    f"hf:{rest} [{split}] has columns {list(features)} but not {missing}; "
                    "set data.image_column and data.label_column"
                )
            if not isinstance(features[image_column], datasets.Image):
                raise SourceError(
                    f"hf:{rest}: column '{image_column}' is "
                    f"{type(features[image_column]).__name__}, "
                    "not an Image feature; set data.image_column to the image column"
                )
            table = table.select_columns([image_column, label_column])
            tables[split] = table.cast_column(image_column, datasets.Image(decode=False))
        label_feature = tables[splits[0]].features[label_column]
        names = (
            list(label_feature.names) if isinstance(label_feature, datasets.ClassLabel) else None
        )

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
                            read = _file_reader(image["path"], location)
                        else:
                            read = partial(given, b"")
                        yield Item(
                            key=key,
                            label=_label(label, names),
                            read=read,
                            origin=f"hf:{rest}/{key}",
                            split=split,
                        )

        return Source(items(), sum(len(t) for t in tables.values()))

    def listed_classes(
        self, rest: str, data: DataConfig, not_here: tuple[str, ...], listings: Listings
    ) -> set[str] | None:
        """None (a Hub dataset's listing needs the network); a local folder must exist."""
        location, _ = _location(rest)
        looks_local = location.startswith(("/", "./", "../", "~")) or os.sep in location[:1]
        if looks_local and not os.path.exists(os.path.expanduser(location)):
            raise SourceError(
                f"hf:{rest}: the folder {location} does not exist; give a folder "
                "written by save_to_disk, a folder of data files or a Hub dataset id (owner/name)"
            )
        return None

    def snapshot(self, rest: str, context: SnapshotContext) -> int | None:
        """A local folder's files (path, size, time), else the Hub revision (commit sha)."""
        location, _ = _location(rest)
        if os.path.isdir(location):
            return hash_tree(location, context.digest)
        revision = hub_revision(location, context.notes)
        context.digest.update(f"hf\0{rest}\0{revision}\n".encode())
        return None


def _location(rest: str) -> tuple[str, str | None]:
    """(folder or Hub id, config name): a trailing `:CONFIG` unless the whole string is a path."""
    head, sep, tail = rest.rpartition(":")
    if sep and head and "/" not in tail and not os.path.exists(rest):
        return head, tail
    return rest, None


def hub_revision(repo: str, notes: list[str]) -> str:
    """The Hub dataset's current commit sha, or "unresolved" with a note saying why."""
    try:
        from huggingface_hub import HfApi

        sha = HfApi().dataset_info(repo, timeout=10).sha
    except Exception as exc:  # offline, private, unknown id
        notes.append(
            f"hf:{repo}: revision not resolved ({type(exc).__name__}); "
            "a changed Hub dataset is not seen by the cache"
        )
        return "unresolved"
    return str(sha)


def _file_reader(path: str, location: str) -> Callable[[], bytes]:
    if is_uri(path):
        return partial(read_uri, path, None)
    if not os.path.isabs(path) and os.path.isdir(location):
        path = os.path.join(location, path)
    return partial(read_local, path, None)


def _label(value: Any, names: list[str] | None) -> str | None:
    if value is None:
        return None
    if names is not None:
        return names[value] if 0 <= value < len(names) else None
    import numpy as np

    if isinstance(value, int | np.integer) and value < 0:
        return None
    return str(value)
