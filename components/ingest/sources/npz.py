"""`npz:FILE`: arrays `x` and `y`, optionally `x_test`/`y_test` and `class_names`.

An .npz archive decompresses whole arrays, so this source holds them in memory: use it for
small data sets (a folder, csv, tfds or hf source for large ones).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from components.ingest.sources.base import Item, PathKind, SnapshotContext, Source, given
from components.ingest.sources.hashing import SnapshotError, hash_content
from components.ingest.sources.listing import Listings, SourceError
from components.spec import DataConfig

SAVE_HINT = "save it with np.savez(path, x=images, y=labels)"


class NpzKind(PathKind):
    scheme = "npz"
    example = "npz:/data/digits.npz"

    def open(self, rest: str, config: Any) -> Source:
        import numpy as np

        path = Path(rest)
        if not path.is_file():
            what = "is a folder, not an .npz file" if path.is_dir() else "does not exist"
            raise SourceError(f"npz:{rest} {what}; give the archive's path")
        with np.load(path, allow_pickle=False) as archive:
            names = set(archive.files)
            if not {"x", "y"} <= names:
                raise SourceError(
                    f"npz:{rest} must hold arrays 'x' and 'y'; it has {sorted(names)}"
                )
            class_names = (
                [str(c) for c in archive["class_names"]] if "class_names" in names else None
            )
            parts: list[tuple[str, str, str | None]] = [("x", "y", None)]
            if {"x_test", "y_test"} <= names:
                parts = [("x", "y", "train"), ("x_test", "y_test", "test")]
            arrays = [
                (x_name, archive[x_name], archive[y_name], split) for x_name, y_name, split in parts
            ]
        for x_name, x, y, _ in arrays:
            if len(x) != len(y):
                raise SourceError(
                    f"npz:{rest}: {x_name} has {len(x)} rows but its labels have {len(y)}"
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

    def listed_classes(
        self, rest: str, data: DataConfig, not_here: tuple[str, ...], listings: Listings
    ) -> set[str] | None:
        """`class_names`, else the distinct labels of `y` (and `y_test`)."""
        if self.elsewhere(rest, not_here):
            return None
        import numpy as np

        if not os.path.isfile(rest):
            what = "is a folder, not an .npz file" if os.path.isdir(rest) else "does not exist"
            raise SourceError(f"npz:{rest} {what}; give the archive's path")
        if not zipfile.is_zipfile(rest):
            raise SourceError(f"npz:{rest} is not an .npz archive (not a zip file); {SAVE_HINT}")
        try:
            with np.load(rest, allow_pickle=False) as archive:
                names = set(archive.files)
                if not {"x", "y"} <= names:
                    raise SourceError(
                        f"npz:{rest} must hold arrays 'x' and 'y'; it has "
                        f"{sorted(names)}; {SAVE_HINT}"
                    )
                if "class_names" in names:
                    return {str(c) for c in archive["class_names"]}
                labels = [archive["y"]] + ([archive["y_test"]] if "y_test" in names else [])
                return {str(v.item()) for y in labels for v in np.unique(y)}
        except SourceError:
            raise
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise SourceError(
                f"npz:{rest} is not a readable .npz archive ({type(exc).__name__}: "
                f"{str(exc)[:200]}); {SAVE_HINT}"
            ) from None

    def snapshot(self, rest: str, context: SnapshotContext) -> int | None:
        """The file's content hash."""
        if not os.path.isfile(rest):
            raise SnapshotError(
                f"data.source npz:{rest} does not exist; give the path of an .npz file"
            )
        hash_content(rest, context.digest)
        return 1
