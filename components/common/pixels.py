"""The one image decoder: encoded bytes or image files -> pixel arrays, without TensorFlow.

`decode` + `resize_bilinear` (and `load_image` for files) give a model input the way the
pipeline's tf.data input does it (components.common.tfdata); `decode_resized` resizes with a
Pillow filter for the transformers trainer, as the checkpoints' image processors do.

Training and evaluation decode with `tf.io.decode_image(channels=C)` (first frame of an
animation, alpha dropped, no EXIF rotation) and resize with `tf.image.resize(method="bilinear")`
(half-pixel centres, no antialiasing) to float32 in [0, 255]. Here Pillow decodes and numpy
resizes with the same bilinear arithmetic, so a file scores the same as it would in evaluation
without importing TensorFlow for the input. PNG, GIF and BMP give the same pixels. JPEG pixels
differ by about one level on average: TensorFlow decodes with libjpeg's fast integer IDCT,
Pillow with the accurate one. Grey conversion uses Pillow's ITU-R 601 luma, which is what JPEG
decoding does too; TensorFlow's PNG decoding weights the channels slightly differently.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"})


class ImageReadError(ValueError):
    """A file that is not a readable image."""


def _open(data: bytes, channels: int) -> Any:
    """Encoded bytes -> the first frame as a Pillow image in mode L (channels 1) or RGB."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.seek(0)
            image: Image.Image = opened
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                # 16-bit greyscale: keep the high byte, as 8-bit decoding does
                grey = (np.asarray(image, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8)
                image = Image.fromarray(grey, mode="L")
            return image.convert("L" if channels == 1 else "RGB")
    except UnidentifiedImageError:
        raise ImageReadError("not a readable image (unknown format or corrupt file)") from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(
            f"too many pixels to decode safely (decompression bomb: {exc})"
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(f"not a readable image ({exc})") from None


def _array(image: Any) -> np.ndarray:
    array = np.array(image, dtype=np.uint8)  # a writable copy (torch wraps it as it is)
    return array[:, :, None] if array.ndim == 2 else array


def decode(data: bytes, channels: int) -> np.ndarray:
    """Encoded bytes -> uint8 array (H, W, channels)."""
    return _array(_open(data, channels))


def decode_resized(
    data: bytes, size: tuple[int, int], resample: int, channels: int = 3
) -> np.ndarray:
    """Encoded bytes -> uint8 (height, width, channels) of `size`, resized by Pillow with the
    `resample` filter (what Hugging Face image processors do)."""
    image = _open(data, channels)
    if image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), resample=resample)
    return _array(image)


def resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, C) -> float32 (size[0], size[1], C), as tf.image.resize(method="bilinear")."""
    image = np.asarray(image, dtype=np.float32)
    in_h, in_w = image.shape[:2]
    out_h, out_w = int(size[0]), int(size[1])
    if (in_h, in_w) == (out_h, out_w):
        return image.copy()

    def weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        scale = np.float32(in_size / out_size)
        centre = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
        floor = np.floor(centre)
        lower = np.maximum(floor, 0).astype(np.int64)
        upper = np.minimum(np.ceil(centre), in_size - 1).astype(np.int64)
        return lower, upper, (centre - floor).astype(np.float32)

    y0, y1, y_lerp = weights(in_h, out_h)
    x0, x1, x_lerp = weights(in_w, out_w)
    x_lerp = x_lerp[None, :, None]
    top = image[y0][:, x0] + (image[y0][:, x1] - image[y0][:, x0]) * x_lerp
    bottom = image[y1][:, x0] + (image[y1][:, x1] - image[y1][:, x0]) * x_lerp
    return (top + (bottom - top) * y_lerp[:, None, None]).astype(np.float32)


def load_image(path: str | Path, input_size: tuple[int, int], channels: int) -> np.ndarray:
    """An image file as the model's input: float32 [0, 255], (height, width, channels).

    Only a regular file of at most MAX_FILE_BYTES is read: a named pipe, a device or a broken
    link is an ImageReadError before a byte is read (nothing blocks or fills the memory).
    """
    from components.common.files import FileRejected, read_local
    from components.spec import MAX_FILE_BYTES

    try:
        data = read_local(path, MAX_FILE_BYTES, limit="the largest image file read")
    except FileRejected as exc:
        raise ImageReadError(str(exc)) from None
    except OSError as exc:
        raise ImageReadError(f"cannot read the file ({exc.strerror or exc})") from None
    return resize_bilinear(decode(data, channels), input_size)
