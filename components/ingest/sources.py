"""Data sources: each yields items with a stable key, a class name and a way to read the bytes.

A source never holds the images in memory; an item's `read()` returns the encoded image bytes
(or a numpy array for array-backed sources), called once when the item is written.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class Item:
    key: str  # stable id of the source item: same item -> same key on every run and machine
    label: str  # source class name (before label_map)
    read: Callable[[], bytes | np.ndarray]
    origin: str  # where it came from, for the quarantine report
    split: str | None = None  # the source's own split ("train"/"test"), if it has one


class SourceError(ValueError):
    """The source cannot be read; the message says what to fix."""


def open_source(source: str, config: Any) -> Iterator[Item]:
    scheme, _, rest = source.partition(":")
    readers = {"sklearn": _sklearn, "folder": _folder, "npz": _npz}
    if scheme not in readers:
        raise SourceError(
            f"data source '{source}' is not readable by this version of the ingest step; "
            f"supported here: {', '.join(s + ':' for s in readers)}"
        )
    return readers[scheme](rest, config)


def _sklearn(name: str, config: Any) -> Iterator[Item]:
    from sklearn.datasets import load_digits

    if name != "digits":
        raise SourceError(f"sklearn:{name} is not embedded; use sklearn:digits")
    digits = load_digits()
    # 0..16 intensities -> 0..255 greyscale
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    for index, (image, target) in enumerate(zip(images, digits.target, strict=True)):
        yield Item(
            key=f"digits/{index:05d}",
            label=str(digits.target_names[target]),
            read=lambda image=image: image,
            origin=f"sklearn:digits[{index}]",
        )


def _folder(root: str, config: Any) -> Iterator[Item]:
    path = Path(root)
    if not path.is_dir():
        raise SourceError(f"folder:{root} is not a directory")
    class_dirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise SourceError(
            f"folder:{root} has no class subfolders; expected {root}/<class>/<image files>"
        )
    for class_dir in class_dirs:
        for file in sorted(class_dir.rglob("*")):
            if file.is_file() and not file.name.startswith("."):
                relative = file.relative_to(path).as_posix()
                yield Item(
                    key=relative,
                    label=class_dir.name,
                    read=file.read_bytes,
                    origin=str(file),
                )


def _npz(file: str, config: Any) -> Iterator[Item]:
    """`x`/`y` arrays (optionally `x_test`/`y_test` and `class_names`) in one .npz file."""
    path = Path(file)
    if not path.is_file():
        raise SourceError(f"npz:{file} does not exist")
    with np.load(path, allow_pickle=False) as archive:
        names = set(archive.files)
        if not {"x", "y"} <= names:
            raise SourceError(f"npz:{file} must hold arrays 'x' and 'y'; it has {sorted(names)}")
        class_names = [str(c) for c in archive["class_names"]] if "class_names" in names else None
        parts = [("x", "y", None)]
        if {"x_test", "y_test"} <= names:
            parts = [("x", "y", "train"), ("x_test", "y_test", "test")]
        for x_name, y_name, split in parts:
            x, y = archive[x_name], archive[y_name]
            if len(x) != len(y):
                raise SourceError(f"npz:{file}: {x_name} has {len(x)} rows but {y_name} has {len(y)}")
            for index in range(len(x)):
                label = y[index].item()
                name = class_names[label] if class_names else str(label)
                yield Item(
                    key=f"{x_name}/{index:07d}",
                    label=name,
                    read=lambda image=x[index]: np.asarray(image),
                    origin=f"npz:{path.name}[{x_name}][{index}]",
                    split=split,
                )


def encode_png(array: np.ndarray) -> bytes:
    from PIL import Image

    if array.dtype != np.uint8:
        if array.max() <= 1.0:
            array = array * 255.0
        array = np.clip(np.round(array), 0, 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()
