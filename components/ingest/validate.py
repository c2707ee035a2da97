"""Decode each image once with Pillow; convert it to the configured channels or reject it."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from components.ingest.sources import encode_png

# Refuse images whose pixel count would take gigabytes to decode (Pillow raises past 2x this).
Image.MAX_IMAGE_PIXELS = 89_478_485


@dataclass(frozen=True)
class Checked:
    data: bytes | None  # encoded bytes to store, None when rejected
    format: str  # "png", "jpeg", ...
    width: int = 0
    height: int = 0
    reason: str | None = None  # why it was rejected
    converted: bool = False


def check_image(raw: bytes | np.ndarray, channels: int, min_side: int = 1) -> Checked:
    """Validate one image; keep its bytes when they already decode as wanted, else re-encode."""
    if isinstance(raw, np.ndarray):
        array = raw
        if array.ndim == 3 and array.shape[-1] not in (1, 3, 4):
            return Checked(None, "array", reason=f"array shape {array.shape} is not an image")
        image = Image.open(io.BytesIO(encode_png(array)))
        return _finish(image, None, channels, min_side)
    if len(raw) == 0:
        return Checked(None, "unknown", reason="empty file")
    try:
        image = Image.open(io.BytesIO(raw))
        image.load()
    except Image.DecompressionBombError:
        return Checked(None, "unknown", reason="decompression bomb (too many pixels)")
    except UnidentifiedImageError:
        return Checked(None, "unknown", reason="not an image")
    except (OSError, SyntaxError, ValueError) as exc:
        return Checked(None, "unknown", reason=f"corrupt image ({exc})")
    return _finish(image, raw, channels, min_side)


def _finish(image: Image.Image, raw: bytes | None, channels: int, min_side: int) -> Checked:
    source_format = (image.format or "png").lower()
    width, height = image.size
    if min(width, height) < min_side:
        return Checked(None, source_format, width, height, reason=f"too small ({width}x{height})")
    wanted_mode = "L" if channels == 1 else "RGB"
    oriented = ImageOps.exif_transpose(image)
    needs_conversion = (
        raw is None
        or image.mode != wanted_mode
        or oriented is not image
        or source_format not in ("jpeg", "png")
        or getattr(image, "is_animated", False)
    )
    if not needs_conversion:
        return Checked(raw, source_format, width, height)
    converted = oriented.convert(wanted_mode)
    buffer = io.BytesIO()
    converted.save(buffer, format="PNG")
    return Checked(buffer.getvalue(), "png", *converted.size, converted=raw is not None)
