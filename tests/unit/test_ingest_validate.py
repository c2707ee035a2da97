"""Image validation: a generated fuzz corpus of bad files among good ones, and each conversion.

The corpus has 18 kinds of bad file, 6 seeded variants each (random cut points, random bytes),
mixed with 24 kinds of good file in 8 variants each: every bad file must be quarantined with
the right reason, every good one kept, and nothing may crash.
"""

from __future__ import annotations

import csv
import io
import os
import struct
import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFile

from components.common.dataset import IMAGE_FORMATS, iterate_examples
from components.ingest.parallel import check_in_order
from components.ingest.run import ingest
from components.ingest.sources.base import given
from components.ingest.validate import MAX_PIXELS, REASONS, check_image

BAD_VARIANTS = 6
GOOD_VARIANTS = 8
MIN_SIDE = 8


def _encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _photo(rng: np.random.Generator, width: int = 40, height: int = 30) -> Image.Image:
    """A smooth gradient with noise: distinct per call, compresses like a photo."""
    x = np.linspace(0, 255, width)[None, :, None]
    y = np.linspace(0, 255, height)[:, None, None]
    base = (x * rng.random(3) + y * rng.random(3)) / 2
    pixels = np.clip(base + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def _png(width: int, height: int, depth: int, colour_type: int, rows: bytes) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows))
        + _chunk(b"IEND", b"")
    )


def _cut(data: bytes, rng: np.random.Generator) -> bytes:
    return data[: int(len(data) * rng.uniform(0.2, 0.8))]


def _bad_files(rng: np.random.Generator) -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, expected reason code), one variant of each kind."""
    photo = _photo(rng)
    jpeg, png = _encode(photo, "JPEG"), _encode(photo, "PNG")
    flipped = bytearray(png)
    flipped[20] ^= 0xFF  # inside IHDR: its CRC no longer matches
    idat = png.index(b"IDAT") + 8
    broken = bytearray(png)
    broken[idat : idat + 16] = bytes(16)  # zeros in the zlib stream
    noise = bytes(rng.integers(0, 256, int(rng.integers(50, 2000)), dtype=np.uint8))
    while noise[:2] in (b"BM", b"II", b"MM", b"\xff\xd8", b"\x89P", b"GI", b"RI"):
        noise = bytes(rng.integers(0, 256, len(noise), dtype=np.uint8))
    return {
        "empty.jpg": (b"", "empty"),
        "notes.jpg": (
            b"these are my notes, not a picture\n" * int(rng.integers(1, 20)),
            "not an image",
        ),
        "page.png": (b"<!DOCTYPE html><html><body>404 Not Found</body></html>", "not an image"),
        "noise.jpg": (noise, "not an image"),
        "cut.jpg": (_cut(jpeg, rng), "truncated"),
        "header-only.jpg": (jpeg[: int(rng.integers(160, 300))], "truncated"),
        "cut.png": (_cut(png, rng), "truncated"),
        "cut.gif": (_cut(_encode(photo.convert("P"), "GIF"), rng), "truncated"),
        "cut.bmp": (_cut(_encode(photo, "BMP"), rng), "truncated"),
        "cut.tif": (_cut(_encode(photo, "TIFF"), rng), "truncated"),
        "cut.webp": (_cut(_encode(photo, "WEBP"), rng), "corrupt"),
        "bad-crc.png": (bytes(flipped), "corrupt"),
        "broken-stream.png": (bytes(broken), "corrupt"),
        "jpeg-garbage.jpg": (b"\xff\xd8\xff" + noise + b"\xff\xd9", "corrupt"),
        "bomb.png": (_png(100_000, 100_000, 8, 2, b"\0" * 64), "decompression bomb"),
        "big-header.png": (_png(10_000, 10_000, 8, 0, b"\0" * 64), "decompression bomb"),
        "tiny.png": (_encode(photo.resize((4, 4)), "PNG"), "too small"),
        "sliver.jpg": (_encode(photo.resize((200, 3)), "JPEG"), "too small"),
    }


def _good_files(rng: np.random.Generator) -> dict[str, tuple[bytes, str, tuple[int, int]]]:
    """name -> (bytes, stored format, stored (width, height)) for 3 channels; all distinct."""
    size = (40, 30)

    def photo() -> Image.Image:
        return _photo(rng, *size)

    alpha = photo()
    alpha.putalpha(Image.fromarray(rng.integers(0, 256, size[::-1], dtype=np.uint8)))
    grey_alpha = photo().convert("L")
    grey_alpha.putalpha(Image.fromarray(rng.integers(0, 256, size[::-1], dtype=np.uint8)))
    transparent = photo().convert("P")
    transparent.info["transparency"] = 0
    rotated = photo()
    exif = rotated.getexif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    frames = [photo() for _ in range(3)]
    grey16 = rng.integers(0, 65536, size[::-1], dtype=np.uint16)
    rgb16 = rng.integers(0, 65536, (size[1], size[0] * 3), dtype=np.uint16).astype(">u2")
    rgb16_rows = b"".join(b"\0" + row.tobytes() for row in rgb16)
    floats = Image.fromarray(rng.random(size[::-1]).astype(np.float32), "F")
    gif_frames = [f.convert("P") for f in frames]
    return {
        "rgb.jpg": (_encode(photo(), "JPEG"), "jpeg", size),
        "progressive.jpg": (_encode(photo(), "JPEG", progressive=True), "jpeg", size),
        "rgb.png": (_encode(photo(), "PNG"), "png", size),
        "grey.jpg": (_encode(photo().convert("L"), "JPEG"), "jpeg", size),
        "grey.png": (_encode(photo().convert("L"), "PNG"), "png", size),
        "cmyk.jpg": (_encode(photo().convert("CMYK"), "JPEG"), "jpeg", size),
        "palette.png": (_encode(photo().convert("P"), "PNG"), "png", size),
        "transparent-palette.png": (_encode(transparent, "PNG"), "png", size),
        "rgba.png": (_encode(alpha, "PNG"), "png", size),
        "grey-alpha.png": (_encode(grey_alpha, "PNG"), "png", size),
        "bilevel.png": (_encode(photo().convert("1"), "PNG"), "png", size),
        "grey16.png": (_encode(Image.fromarray(grey16), "PNG"), "png", size),
        "rgb16.png": (_png(size[0], size[1], 16, 2, rgb16_rows), "png", size),
        "float.tif": (_encode(floats, "TIFF"), "png", size),
        "exif-rotated.jpg": (_encode(rotated, "JPEG", exif=exif.tobytes()), "jpeg", size[::-1]),
        "animated.gif": (
            _encode(gif_frames[0], "GIF", save_all=True, append_images=gif_frames[1:]),
            "png",
            size,
        ),
        "animated.png": (
            _encode(frames[0], "PNG", save_all=True, append_images=frames[1:]),
            "png",
            size,
        ),
        "png-named.jpg": (_encode(photo(), "PNG"), "png", size),
        "jpeg-named.png": (_encode(photo(), "JPEG"), "jpeg", size),
        "gif-named.jpg": (_encode(photo().convert("P"), "GIF"), "png", size),
        "photo.bmp": (_encode(photo(), "BMP"), "png", size),
        "photo.webp": (_encode(photo(), "WEBP", lossless=True), "png", size),
        "photo.tif": (_encode(photo(), "TIFF"), "png", size),
        "no-extension": (_encode(photo(), "JPEG"), "jpeg", size),
    }


@pytest.fixture(scope="module")
def corpus(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, str], dict[str, tuple[str, tuple[int, int]]]]:
    """A class-per-folder corpus; (root, bad key -> reason code, good key -> (format, size))."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(20240611)
    bad: dict[str, str] = {}
    good: dict[str, tuple[str, tuple[int, int]]] = {}
    for variant in range(max(BAD_VARIANTS, GOOD_VARIANTS)):
        label = ("cats", "dogs")[variant % 2]
        folder = root / label / f"v{variant}"
        folder.mkdir(parents=True)
        if variant < BAD_VARIANTS:
            for name, (data, code) in _bad_files(rng).items():
                (folder / f"bad-{name}").write_bytes(data)
                bad[f"{label}/v{variant}/bad-{name}"] = code
        if variant < GOOD_VARIANTS:
            for name, (data, image_format, size) in _good_files(rng).items():
                (folder / f"good-{name}").write_bytes(data)
                good[f"{label}/v{variant}/good-{name}"] = (image_format, size)
    (root / "cats" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # hidden: not an item
    return root, bad, good


def test_the_corpus_is_big_and_varied(corpus: tuple) -> None:
    _, bad, good = corpus
    assert len({key.rsplit("bad-", 1)[1] for key in bad}) >= 10
    assert len(bad) + len(good) >= 100
    # What reading refuses (pipes, devices, size, time) is tested in test_ingest_hostile.py.
    read_level = {"unreadable", "not a regular file", "too large", "timed out"}
    assert set(bad.values()) >= set(REASONS) - read_level - {"bad array", "duplicate", "leakage"}


def test_every_bad_file_is_quarantined_with_its_reason_and_every_good_one_kept(
    corpus: tuple, tmp_path: Path
) -> None:
    import tensorflow as tf

    root, bad, good = corpus
    config = {
        "source": f"folder:{root}",
        "min_image_side": MIN_SIDE,
        "splits": {"validation": 0.1, "test": 0.1},
    }
    info = ingest(config, tmp_path / "dataset", tmp_path / "quarantine.csv", workers=2)

    with (tmp_path / "quarantine.csv").open() as file:
        rows = list(csv.DictReader(file))
    reasons = {row["key"]: row["reason"].split(":", 1)[0] for row in rows}
    assert reasons == bad
    assert all(row["source"].endswith(row["key"].split("/")[-1]) for row in rows)
    assert info["seen"] == len(bad) + len(good)
    assert info["kept"] == len(good) and info["quarantined"] == len(bad)

    stored = {}
    for split in ("train", "validation", "test"):
        for example in iterate_examples(tmp_path / "dataset", split):
            stored[example["key"]] = example
    assert set(stored) == set(good)
    for key, (image_format, size) in good.items():
        example = stored[key]
        assert example["format"] == image_format, key
        assert example["format"] in IMAGE_FORMATS
        # What the trainer does: decode as is, to the configured channels.
        pixels = tf.io.decode_image(example["image"], channels=3, expand_animations=False)
        assert tuple(pixels.shape) == (size[1], size[0], 3), key
        with Image.open(io.BytesIO(example["image"])) as image:
            assert image.mode == "RGB", key
    kept_raw = {
        "rgb.jpg",
        "progressive.jpg",
        "rgb.png",
        "png-named.jpg",
        "jpeg-named.png",
        "no-extension",
    }
    assert info["converted"] == len(good) - GOOD_VARIANTS * len(kept_raw)
    assert info["extension_mismatches"] == GOOD_VARIANTS * 3
    assert info["conversions"]["EXIF orientation"] == GOOD_VARIANTS
    assert info["conversions"]["animated: first frame"] == 2 * GOOD_VARIANTS
    assert info["conversions"]["CMYK->RGB"] == GOOD_VARIANTS


def test_a_greyscale_dataset_stores_single_channel_images(corpus: tuple) -> None:
    root, bad, good = corpus
    for key in good:
        checked = check_image((root / key).read_bytes(), channels=1, min_side=MIN_SIDE)
        assert checked.data is not None, key
        with Image.open(io.BytesIO(checked.data)) as image:
            assert image.mode == "L", key


def test_bad_files_are_rejected_whatever_the_channels(corpus: tuple) -> None:
    root, bad, _ = corpus
    for key, code in bad.items():
        checked = check_image((root / key).read_bytes(), channels=1, min_side=MIN_SIDE)
        assert checked.data is None and checked.code == code, (key, checked.reason)


def test_a_decompression_bomb_is_rejected_before_it_is_decoded(monkeypatch) -> None:
    bomb = _png(30_000, 30_000, 8, 2, b"\0" * 64)
    with monkeypatch.context() as patched:
        # Decoding would be a bug (and take gigabytes): make it fail loudly instead of timing it.
        patched.setattr(ImageFile.ImageFile, "load", _no_decoding)
        checked = check_image(bomb, channels=3)
    assert checked.code == "decompression bomb", checked.reason
    allowed = check_image(_encode(Image.new("RGB", (20, 20)), "PNG"), channels=3, max_pixels=399)
    assert allowed.code == "decompression bomb" and "400 pixels > 399" in str(allowed.reason)
    assert MAX_PIXELS < 30_000 * 30_000


def _no_decoding(self: Any) -> None:
    raise AssertionError("the bomb was decoded")


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (40, 20), "white")
    image.paste((255, 0, 0), (0, 0, 10, 20))  # red stripe on the left
    exif = image.getexif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise: the stripe ends up on top
    checked = check_image(_encode(image, "JPEG", exif=exif.tobytes(), quality=98), channels=3)
    assert (checked.width, checked.height) == (20, 40)
    with Image.open(io.BytesIO(checked.data)) as upright:
        assert upright.size == (20, 40)
        assert upright.getexif().get(0x0112) in (None, 1)
        top, bottom = upright.getpixel((10, 2)), upright.getpixel((10, 37))
    assert top[0] > 200 and top[1] < 60 and min(bottom) > 200


def test_transparent_pixels_become_white_and_16_bit_is_scaled() -> None:
    clear = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    with Image.open(io.BytesIO(check_image(_encode(clear, "PNG"), channels=3).data)) as image:
        assert image.getpixel((5, 5)) == (255, 255, 255)
    bright = Image.fromarray(np.full((10, 10), 65535, dtype=np.uint16))
    checked = check_image(_encode(bright, "PNG"), channels=1)
    with Image.open(io.BytesIO(checked.data)) as image:
        assert image.mode == "L" and image.getpixel((5, 5)) == 255
    assert checked.conversions == ("I;16->L",)


def test_the_first_frame_of_an_animation_is_kept() -> None:
    frames = [Image.new("RGB", (12, 12), colour) for colour in ("red", "lime", "blue")]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    with Image.open(io.BytesIO(check_image(data, channels=3).data)) as image:
        assert image.getpixel((6, 6)) == (255, 0, 0)


def test_images_that_already_fit_keep_their_bytes() -> None:
    jpeg = _encode(_photo(np.random.default_rng(0)), "JPEG")
    checked = check_image(jpeg, channels=3)
    assert checked.data == jpeg and not checked.converted and checked.conversions == ()


@pytest.mark.parametrize(
    ("array", "code"),
    [
        (np.zeros((8, 8, 2), np.uint8), "bad array"),
        (np.zeros((0, 8), np.uint8), "bad array"),
        (np.full((8, 8), np.nan), "bad array"),
        (np.array([["a"] * 8] * 8), "bad array"),
        (np.zeros((4, 4), np.uint8), "too small"),
    ],
)
def test_arrays_that_are_not_images_are_rejected(array: np.ndarray, code: str) -> None:
    assert check_image(array, channels=1, min_side=8).code == code


def test_arrays_are_scaled_to_8_bit() -> None:
    for array in (
        np.full((8, 8), 1.0),
        np.full((8, 8, 1), 65535, np.uint16),
        np.full((8, 8, 3), 255, np.uint8),
    ):
        checked = check_image(array, channels=1)
        with Image.open(io.BytesIO(checked.data)) as image:
            assert image.mode == "L" and image.getpixel((0, 0)) == 255, array.dtype


def test_an_unreadable_item_is_quarantined(tmp_path: Path) -> None:
    from components.ingest.validate import check_item

    missing = partial(Path.read_bytes, tmp_path / "gone.jpg")
    assert check_item(missing, channels=3).code == "unreadable"


def _entries(count: int, crash_at: int | None = None) -> list[tuple[int, Callable[[], object]]]:
    rng = np.random.default_rng(1)
    images = [_encode(_photo(rng, 12, 10), "PNG") for _ in range(count)]
    entries: list[tuple[int, Callable[[], object]]] = [
        (i, partial(given, data)) for i, data in enumerate(images)
    ]
    if crash_at is not None:
        entries[crash_at] = (crash_at, partial(os._exit, 3))  # the worker process dies
    return entries


def test_parallel_checking_keeps_the_input_order_and_the_results() -> None:
    entries = _entries(300)
    serial = list(check_in_order(entries, 3, 1, workers=1))
    parallel = list(check_in_order(entries, 3, 1, workers=2))
    assert [i for i, _, _ in parallel] == list(range(300))
    assert [c.digest for _, c, _ in parallel] == [c.digest for _, c, _ in serial]
    assert all(c.data and stored is None for _, c, stored in parallel)


def test_kept_bytes_are_stored_by_the_process_that_checked_them(tmp_path: Path) -> None:
    entries = _entries(300)
    expected = [check_image(read(), 3) for _, read in entries]
    for workers in (1, 2):
        spill = tmp_path / f"spill-{workers}"
        spill.mkdir()
        results = list(check_in_order(entries, 3, 1, workers=workers, spill_dir=str(spill)))
        paths = {stored.path for _, _, stored in results}
        assert len(paths) == workers and all(Path(p).parent == spill for p in paths)
        for (_, checked, stored), want in zip(results, expected, strict=True):
            assert checked.data == b"" and checked.digest == want.digest
            with open(stored.path, "rb") as file:
                file.seek(stored.offset)
                assert file.read(stored.length) == want.data


def test_a_worker_that_dies_costs_only_its_item(tmp_path: Path) -> None:
    results = list(
        check_in_order(_entries(300, crash_at=170), 3, 1, workers=2, spill_dir=str(tmp_path))
    )
    assert [i for i, _, _ in results] == list(range(300))
    crashed = [i for i, checked, _ in results if checked.reason is not None]
    assert crashed == [170]
    assert "crashed" in str(results[170][1].reason)
    assert all(stored is not None for i, _, stored in results if i != 170)
