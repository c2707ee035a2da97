"""`sklearn:digits`: the 8x8 digits that ship with scikit-learn (offline, embedded)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.ingest.sources.base import Item, SnapshotContext, Source, SourceKind, given
from components.ingest.sources.listing import Listings, SourceError
from components.spec import DataConfig

if TYPE_CHECKING:
    import numpy as np

EMBEDDED = ("digits",)
DIGITS = tuple(str(d) for d in range(10))


class SklearnKind(SourceKind):
    scheme = "sklearn"
    example = "sklearn:digits"

    def check(self, rest: str) -> None:
        if rest not in EMBEDDED:
            raise SourceError(f"sklearn:{rest} is not embedded; available: {', '.join(EMBEDDED)}")

    def open(self, rest: str, config: Any) -> Source:
        import numpy as np

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

    def listed_classes(
        self, rest: str, data: DataConfig, not_here: tuple[str, ...], listings: Listings
    ) -> set[str] | None:
        return None  # the name is checked with the config; there is nothing to list

    def class_names(
        self, rest: str, data: DataConfig, not_here: tuple[str, ...], listings: Listings
    ) -> set[str] | None:
        return set(DIGITS)

    def snapshot(self, rest: str, context: SnapshotContext) -> int | None:
        """The scikit-learn version that ships the data."""
        import sklearn

        context.digest.update(f"sklearn\0{sklearn.__version__}\n".encode())
        return None


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """(N x 8 x 8 intensities 0..16, N targets 0..9), as sklearn.datasets.load_digits returns.

    Read from the CSV that scikit-learn ships, without importing scikit-learn (which takes
    seconds to import SciPy and pandas); through load_digits if that file ever moves.
    """
    import importlib.util

    import numpy as np

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
