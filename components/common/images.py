"""The image a component is declared with, and small embedded pictures for the reports."""

from __future__ import annotations

import base64
import io

BASE_IMAGE = "image-classification-cpu:latest"
THUMBNAIL_SIDE = 112


def thumbnail_data_uri(image: bytes | None, side: int = THUMBNAIL_SIDE) -> str | None:
    """An encoded image as a small embedded picture; None when it cannot be decoded.

    Tiny images (digits, CIFAR) are enlarged by whole factors without smoothing so their pixels
    stay visible; larger ones are shrunk to fit `side`.
    """
    if not image:
        return None
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(image)) as opened:
            picture = opened.convert("L" if opened.mode in ("L", "LA", "I;16", "1") else "RGB")
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    scale = side / max(picture.size)
    enlarged = scale >= 2
    if enlarged:
        factor = int(scale)
        picture = picture.resize(
            (picture.width * factor, picture.height * factor), Image.Resampling.NEAREST
        )
    else:
        picture.thumbnail((side, side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if enlarged or picture.mode == "L":
        picture.save(buffer, format="PNG", optimize=True)
        mime = "image/png"
    else:
        picture.save(buffer, format="JPEG", quality=85)
        mime = "image/jpeg"
    return f"data:{mime};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
