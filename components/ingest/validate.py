"""Decode each image once with Pillow; keep it, convert it to the configured channels, or reject it.

What is stored is always a JPEG or PNG that decodes, as it is, to the configured mode ("L" for
1 channel, "RGB" for 3): upright, one frame, 8 bits per channel. The original bytes are kept
whenever they already are exactly that; anything else (CMYK, palette, alpha, 16-bit, greyscale
for 3 channels, colour for 1, EXIF-rotated, animated, GIF/BMP/WebP/TIFF, arrays) is converted
and re-encoded: as JPEG (quality 95) when the source was a JPEG, else as lossless PNG.

A rejected image gets a reason "<code>: <detail>"; the codes are the keys of REASONS.
This module runs in worker processes: it imports nothing heavy and never raises for bad input.
"""

from __future__ import annotations

import hashlib
import io
import signal
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from components.common.files import FileRejected

# Reject, before decoding, any image with more pixels than this (Pillow's own warning threshold,
# about 9,500 x 9,500): decoding one would take gigabytes and seconds, and real training images
# are far smaller. Pillow alone only refuses twice this many.
MAX_PIXELS = 89_478_485
JPEG_QUALITY = 95
PNG_COMPRESS_LEVEL = 3
ORIENTATION_TAG = 0x0112
# Longest a single image may take to check (a hostile file that makes a decoder spin).
CHECK_SECONDS = 30.0

REASONS = {
    "unreadable": "the bytes could not be read (missing file, permission, network)",
    "not a regular file": "a named pipe, device, socket or other special file (never read)",
    "too large": "a file bigger than data.max_file_bytes (never read)",
    "timed out": "checking took longer than the per-file time limit",
    "empty": "zero bytes",
    "not an image": "no image format recognised (text, HTML, random bytes, ...)",
    "truncated": "the file ends before the image does",
    "corrupt": "a known image format that does not decode",
    "decompression bomb": f"more than {MAX_PIXELS:,} pixels",
    "too small": "a side shorter than data.min_image_side",
    "bad array": "an array that is not an image (shape, dtype, NaN)",
    "duplicate": "the same image (content hash) as another item of its split",
    "leakage": "the same image as an item of an evaluation split (removed from the other split)",
}
SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
# The last bytes of a complete file (PNG: the IEND chunk type, before its CRC).
END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND", "GIF": b";"}
HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


@dataclass(frozen=True)
class Checked:
    data: bytes | None  # encoded bytes to store, None when rejected
    format: str  # stored format: "jpeg" or "png" ("" when rejected)
    width: int = 0
    height: int = 0
    reason: str | None = None  # "<code>: <detail>" when rejected
    converted: bool = False  # the source bytes were re-encoded
    source_format: str = ""  # what the bytes really were ("jpeg", "png", "gif", ..., "array")
    conversions: tuple[str, ...] = ()  # what was done, e.g. ("CMYK->RGB", "EXIF orientation")
    digest: bytes = b""  # sha256 of `data`: exact-duplicate detection and the fingerprint

    @property
    def code(self) -> str:
        return (self.reason or "").split(":", 1)[0]


def check_chunk(
    reads: Sequence[Callable[[], bytes | np.ndarray]], channels: int, min_side: int
) -> list[Checked]:
    """Read and check a chunk of items (the unit of work of a worker process)."""
    return [check_item(read, channels, min_side) for read in reads]


def check_item(read: Callable[[], bytes | np.ndarray], channels: int, min_side: int = 1) -> Checked:
    try:
        raw = read()
    except FileRejected as exc:
        return rejected(exc.code, exc.detail)
    except Exception as exc:  # OSError locally, tf.errors.* through gfile
        return rejected("unreadable", f"{type(exc).__name__}: {exc}")
    return check_image(raw, channels, min_side)


def check_image(
    raw: bytes | np.ndarray,
    channels: int,
    min_side: int = 1,
    max_pixels: int = MAX_PIXELS,
    seconds: float = CHECK_SECONDS,
) -> Checked:
    """Validate one image; keep its bytes when they already decode as wanted, else re-encode.

    Checking one image takes at most `seconds` (where a timer signal is available: the main
    thread of a process on a POSIX system); past that it is rejected as "timed out".
    """
    try:
        with _time_limit(seconds):
            return _check(raw, channels, min_side, max_pixels)
    except _TimedOut:
        return rejected("timed out", f"checking took more than {seconds:g} s")
    except Exception as exc:  # a decoder failing in an unforeseen way on hostile input
        return rejected("corrupt", f"{type(exc).__name__}: {exc}")


class _TimedOut(BaseException):
    """Raised by the timer inside a decoder; a BaseException so no decoder's handler eats it."""


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise _TimedOut

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _check(raw: Any, channels: int, min_side: int, max_pixels: int) -> Checked:
    if isinstance(raw, np.ndarray):
        image = _from_array(raw)
        if isinstance(image, Checked):
            return image
        return _finish(image, None, "array", channels, min_side)
    raw = bytes(raw)
    if not raw:
        return rejected("empty", "zero bytes")
    with warnings.catch_warnings():
        # Past MAX_PIXELS Pillow warns and decodes anyway; the size check below rejects first.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(raw))
        except Image.DecompressionBombError as exc:
            return rejected("decompression bomb", str(exc))
        except UnidentifiedImageError:
            sniffed = _sniff(raw)
            if sniffed is None:
                return rejected("not an image", f"no image format recognised (starts {raw[:8]!r})")
            if _ends_early(raw, sniffed):
                return rejected("truncated", f"{sniffed} file without its end marker")
            return rejected("corrupt", f"{sniffed} signature but Pillow cannot read it")
        except Exception as exc:
            return _decode_error(exc, raw)
        width, height = image.size
        if width * height > max_pixels:
            return rejected(
                "decompression bomb",
                f"{width}x{height} = {width * height:,} pixels > {max_pixels:,}",
            )
        if width < 1 or height < 1:
            return rejected("corrupt", f"{width}x{height} image")
        # A JPEG that will be stored as it is only needs validating: a DCT-scaled decode reads
        # and entropy-decodes every block (where truncated or corrupt data fails) but does an
        # eighth of the inverse-DCT work, about half the time of a full decode. Everything
        # that is converted is decoded in full.
        scaled = _stored_as_is_jpeg(image, channels)
        if scaled:
            image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
        try:
            image.load()  # the first frame of an animation
        except Image.DecompressionBombError as exc:
            return rejected("decompression bomb", str(exc))
        except Exception as exc:
            return _decode_error(exc, raw)
    full_size = (width, height) if scaled else None
    return _finish(image, raw, (image.format or "").lower(), channels, min_side, full_size)


def _stored_as_is_jpeg(image: Image.Image, channels: int) -> bool:
    wanted = "L" if channels == 1 else "RGB"
    return image.format == "JPEG" and image.mode == wanted and _orientation(image) in (None, 1)


def _finish(
    image: Image.Image,
    raw: bytes | None,
    source_format: str,
    channels: int,
    min_side: int,
    full_size: tuple[int, int] | None = None,
) -> Checked:
    """Keep or convert a decoded image (`full_size`: its size when it was decoded scaled)."""
    conversions = []
    if source_format == "mpo":
        conversions.append("multi-picture JPEG: first picture")
    elif getattr(image, "is_animated", False):
        conversions.append("animated: first frame")
    orientation = _orientation(image)
    if orientation not in (None, 1):
        image = ImageOps.exif_transpose(image)
        conversions.append("EXIF orientation")
    width, height = full_size or image.size
    if min(width, height) < min_side:
        return rejected(
            "too small", f"{width}x{height}, data.min_image_side is {min_side}", source_format
        )
    wanted = "L" if channels == 1 else "RGB"
    keep = (
        raw is not None
        and source_format in ("jpeg", "png")
        and image.mode == wanted
        and not conversions
        and "transparency" not in image.info
        and not _is_16_bit_png(raw)
    )
    if keep:
        assert raw is not None
        data, stored = raw, source_format
    elif full_size is not None:  # _stored_as_is_jpeg and `keep` disagree: a bug, not bad data
        raise AssertionError("a scaled decode must be stored as it is")
    else:
        if raw is not None and _is_16_bit_png(raw) and image.mode not in HIGH_BIT_MODES:
            conversions.append("16-bit->8-bit")  # Pillow reads 16-bit colour as 8-bit RGB(A)
        image, notes = _to_mode(image, wanted)
        conversions.extend(notes)
        stored = "jpeg" if source_format in ("jpeg", "mpo") else "png"
        data = _encode(image, stored)
    return Checked(
        data,
        stored,
        width,
        height,
        converted=raw is not None and not keep,
        source_format=source_format,
        conversions=tuple(conversions),
        digest=hashlib.sha256(data).digest(),
    )


def _to_mode(image: Image.Image, wanted: str) -> tuple[Image.Image, list[str]]:
    """`image` in mode `wanted`, and what was done to get there (e.g. "CMYK->RGB")."""
    mode = image.mode
    note = f"{mode}->{wanted}"
    if mode in HIGH_BIT_MODES:
        array = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16") or (mode == "I" and array.max(initial=0) > 255):
            array = array / 257.0
        elif mode == "F" and array.max(initial=0) <= 1.0:
            array = array * 255.0
        image = Image.fromarray(np.clip(np.round(array), 0, 255).astype(np.uint8), "L")
    elif mode in ALPHA_MODES or "transparency" in image.info:
        # Transparent pixels have arbitrary colours underneath: put them on white.
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        note += " (alpha on white)"
    if image.mode != wanted:
        image = image.convert(wanted)
    return image, [note] if mode != wanted or note.endswith(")") else []


def _encode(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    if image_format == "jpeg":
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    else:
        image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def _orientation(image: Image.Image) -> int | None:
    try:
        return image.getexif().get(ORIENTATION_TAG)
    except Exception:  # unreadable EXIF: the pixels are fine, the orientation unknown
        return None


def _is_16_bit_png(raw: bytes) -> bool:
    # PNG: 8-byte signature, IHDR length and type, width, height, then the bit depth at byte 24.
    return (
        raw[:8] == b"\x89PNG\r\n\x1a\n"
        and raw[12:16] == b"IHDR"
        and len(raw) > 24
        and raw[24] == 16
    )


def _from_array(raw: np.ndarray) -> Image.Image | Checked:
    array = raw
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))) or array.size == 0:
        return rejected(
            "bad array", f"shape {raw.shape} is not HxW, HxWx1, HxWx3 or HxWx4", "array"
        )
    if array.dtype.kind not in "uifb":
        return rejected("bad array", f"dtype {array.dtype} is not numeric", "array")
    if array.dtype != np.uint8:
        values = array.astype(np.float64)
        if not np.isfinite(values).all():
            return rejected("bad array", "NaN or infinite values", "array")
        if array.dtype == np.uint16:
            values = values / 257.0
        elif values.max() <= 1.0:
            values = values * 255.0
        array = np.clip(np.round(values), 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(array))


def _decode_error(exc: Exception, raw: bytes) -> Checked:
    message = str(exc) or type(exc).__name__
    sniffed = _sniff(raw)
    if sniffed in END_MARKERS:  # the structure says which: is the end marker there?
        truncated = _ends_early(raw, sniffed)
    else:
        truncated = "truncated" in message.lower()
    return rejected("truncated" if truncated else "corrupt", message)


def _sniff(raw: bytes) -> str | None:
    """The image format that `raw`'s first bytes announce, if any."""
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in SIGNATURES if raw.startswith(magic)), None)


def _ends_early(raw: bytes, sniffed: str) -> bool:
    """True when a JPEG, PNG or GIF lacks its end marker (the file was cut short)."""
    marker = END_MARKERS.get(sniffed)
    if marker is None:
        return False
    tail = raw.rstrip(b"\0\r\n ")
    return not tail.endswith(marker) if sniffed != "PNG" else marker not in tail[-16:]


def rejected(code: str, detail: str, source_format: str = "") -> Checked:
    assert code in REASONS, code
    return Checked(None, "", reason=f"{code}: {detail}", source_format=source_format)
