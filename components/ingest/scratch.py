"""The ingest step's scratch files, and what stays in memory of each kept image.

While the sources are decoded (pass 1), the bytes of a kept image are appended to a scratch file
by the process that checked it, and its origin to `origins.bin` here; only a `Kept` record (key,
label, content hash, where its bytes are) stays in memory. Pass 2 reads the bytes back to write
the shards. The files live in a temporary folder that needs about the dataset's size free.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO


@dataclass(slots=True)
class Kept:
    """What stays in memory of a kept image; its origin and bytes wait in scratch files."""

    key: str
    label: str
    group: str  # "pool" (to be split), the source's own "validation"/"test", or "extra" (train)
    digest: bytes
    origin_offset: int
    origin_length: int
    file: int  # index of the scratch file that holds the image bytes
    offset: int
    length: int
    format: str
    width: int
    height: int
    split: str = ""  # set once splits are assigned


class Scratch:
    """Scratch files: kept images' origins (written here) and bytes (written by the checkers).

    All writes (pass 1) precede all reads (pass 2).
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self._origins: BinaryIO = (folder / "origins.bin").open("w+b")
        self._size = 0
        self._paths: dict[str, int] = {}
        self._files: list[BinaryIO | None] = []

    def add_origin(self, origin: bytes) -> int:
        offset = self._size
        self._origins.write(origin)
        self._size += len(origin)
        return offset

    def file_index(self, path: str) -> int:
        if path not in self._paths:
            self._paths[path] = len(self._files)
            self._files.append(None)
        return self._paths[path]

    def flush(self) -> None:
        self._origins.flush()

    def image(self, record: Kept) -> bytes:
        file = self._files[record.file]
        if file is None:
            path = next(p for p, index in self._paths.items() if index == record.file)
            file = self._files[record.file] = open(path, "rb")  # noqa: SIM115 - closed in __exit__
        file.seek(record.offset)
        return file.read(record.length)

    def origin(self, record: Kept) -> str:
        self._origins.seek(record.origin_offset)
        return self._origins.read(record.origin_length).decode("utf-8", "surrogateescape")

    def __enter__(self) -> Scratch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._origins.close()
        for file in self._files:
            if file is not None:
                file.close()
