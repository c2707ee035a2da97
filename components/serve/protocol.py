"""The KServe v1 prediction protocol of our server: requests in, checked; predictions out.

A request is `{"instances": [{"image_bytes": {"b64": "<base64 of an image file>"}}, ...]}` (the
TF Serving and Vertex AI convention for binary inputs); the answer is `{"predictions": [...]}`,
one `{"label", "index", "probabilities": {class: p}}` per instance, in order. An error is
`{"error": "<what was wrong and how to fix it>"}` with a 4xx status, and nothing of it is
kept: the next request is served as if it had not happened.

Images are decoded and resized as `components.predict` does (components.common.pixels), so a
file scores the same through the server as through predict.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from components.common.pixels import ImageReadError, decode, resize_bilinear

# One request: at most this many instances, this many bytes of body, this many pixels per
# image (a 40-megapixel photo passes; a PNG that declares 50,000 x 50,000 does not).
MAX_INSTANCES = 256
MAX_REQUEST_BYTES = 64 * 2**20
MAX_IMAGE_PIXELS = 40_000_000
INSTANCE_SHAPE = '{"image_bytes": {"b64": "<base64 of an image file>"}}'


def kserve_routes(name: str) -> tuple[str, str]:
    """(readiness, predict) paths of model `name` in the KServe v1 protocol."""
    return f"/v1/models/{name}", f"/v1/models/{name}:predict"


class RequestError(ValueError):
    """A request the server refuses; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Base64(_Strict):
    b64: str


class Instance(_Strict):
    image_bytes: Base64


class PredictRequest(_Strict):
    instances: list[Instance]
    # Vertex AI passes `parameters` through; the server takes none, so any are ignored.
    parameters: dict[str, Any] | None = None


def _where(location: Sequence[int | str]) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(the body)"


def parse_request(body: bytes, max_instances: int = MAX_INSTANCES) -> PredictRequest:
    """The body as a PredictRequest; raises RequestError naming the field and the fix."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(
            f'the body is not JSON ({exc}); send {{"instances": [{INSTANCE_SHAPE}, ...]}}'
        ) from None
    if not isinstance(document, dict) or "instances" not in document:
        raise RequestError(
            f'the body must be a JSON object with "instances": a list of {INSTANCE_SHAPE}'
        )
    instances = document["instances"]
    if isinstance(instances, list):
        if not instances:
            raise RequestError('"instances" is empty; send at least one image')
        if len(instances) > max_instances:
            raise RequestError(
                f"{len(instances)} instances in one request; send at most {max_instances} per "
                "request (split the list into several requests)",
                status=413,
            )
    try:
        return PredictRequest.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise RequestError(
            f"{_where(first['loc'])}: {first['msg'].lower()}; each instance is {INSTANCE_SHAPE}"
        ) from None


def decode_instance(
    instance: Instance,
    index: int,
    input_size: tuple[int, int],
    channels: int,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> np.ndarray:
    """One instance as the model's input: float32 [0, 255] of `input_size` with `channels`."""
    where = f"instances[{index}].image_bytes.b64"
    text = "".join(instance.image_bytes.b64.split())  # base64 wrapped over lines is fine
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(
            f"{where} is not base64 ({exc}); encode the image file's bytes"
        ) from None
    if not data:
        raise RequestError(f"{where} is empty; send the bytes of an image file")
    _check_pixels(data, where, max_pixels)
    try:
        pixels = decode(data, channels)
    except ImageReadError as exc:
        raise RequestError(
            f"{where}: {exc}; send a PNG, JPEG, GIF, BMP, WebP or TIFF file"
        ) from None
    return resize_bilinear(pixels, input_size)


def _check_pixels(data: bytes, where: str, max_pixels: int) -> None:
    """Refuse an image that declares more than `max_pixels` before any pixel is decoded."""
    from PIL import Image, UnidentifiedImageError

    bomb = "a decompression bomb, or a photo to shrink before sending"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as opened:
                width, height = opened.size
    except Image.DecompressionBombError as exc:
        raise RequestError(f"{where}: {exc} ({bomb})") from None
    except (UnidentifiedImageError, OSError, ValueError):
        return  # decoding says what is wrong with it
    if width * height > max_pixels:
        raise RequestError(
            f"{where} declares {width} x {height} pixels, more than the {max_pixels:,} this "
            f"server decodes ({bomb})"
        )


def predictions(probabilities: np.ndarray, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """One `{"label", "index", "probabilities"}` per row of class probabilities."""
    rows = []
    for row in np.asarray(probabilities, dtype=np.float64):
        best = int(np.argmax(row))
        rows.append(
            {
                "label": class_names[best],
                "index": best,
                "probabilities": {name: float(p) for name, p in zip(class_names, row, strict=True)},
            }
        )
    return rows
