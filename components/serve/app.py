"""The HTTP face of a loaded classifier: FastAPI routes of the KServe v1 protocol.

FastAPI on uvicorn rather than kserve's own ModelServer: ModelServer is built on the same two,
and installing the kserve package would add about twenty distributions to the cpu image
(pandas, aiohttp, grpcio-tools, prometheus-client, uvloop, ...) and pin psutil to 5.9.8, for a
protocol of three routes.

Routes: `GET /` (alive), `GET /v1/models` (the model served), `GET /v1/models/<name>`
(readiness), `POST /v1/models/<name>:predict`; and, on Vertex AI, the health and predict routes
Vertex names (AIP_HEALTH_ROUTE, AIP_PREDICT_ROUTE). The model is loaded before the server
starts, so a server that answers is ready.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from components.serve.protocol import (
    MAX_IMAGE_PIXELS,
    MAX_INSTANCES,
    MAX_REQUEST_BYTES,
    RequestError,
    decode_instance,
    kserve_routes,
    parse_request,
    predictions,
)


@dataclass(frozen=True)
class Routes:
    """The paths a server answers on besides the KServe ones (Vertex AI's, when set)."""

    health: str | None = None
    predict: str | None = None


@dataclass(frozen=True)
class Limits:
    max_instances: int = MAX_INSTANCES
    max_request_bytes: int = MAX_REQUEST_BYTES
    max_image_pixels: int = MAX_IMAGE_PIXELS


class Predictor:
    """Requests -> predictions with one classifier. Decoding runs on any thread; the model
    predicts one batch at a time (a framework's model is not promised to be thread-safe)."""

    def __init__(self, classifier: Any, limits: Limits = Limits()):
        self.classifier, self.limits = classifier, limits
        card = classifier.card
        self.size = (int(card.input_size[0]), int(card.input_size[1]))
        self.channels = int(card.channels)
        self.class_names = list(card.class_names)
        self.lock = threading.Lock()

    def predict(self, body: bytes) -> dict[str, Any]:
        request = parse_request(body, self.limits.max_instances)
        images = np.stack(
            [
                decode_instance(
                    instance, index, self.size, self.channels, self.limits.max_image_pixels
                )
                for index, instance in enumerate(request.instances)
            ]
        )
        with self.lock:
            probabilities = self.classifier.predict(images)
        return {"predictions": predictions(probabilities, self.class_names)}


def create_app(name: str, version: str, predictor: Predictor, routes: Routes = Routes()) -> FastAPI:
    """The FastAPI application serving `predictor` as model `name`."""
    ready_path, predict_path = kserve_routes(name)
    app = FastAPI(title=f"{name} {version}".strip(), docs_url=None, redoc_url=None)
    usage = f"this server answers GET {ready_path} and POST {predict_path}"

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error(404, f"no route {request.method} {request.url.path}; {usage}")
        return error(exc.status_code, str(exc.detail))

    async def alive() -> dict[str, str]:
        return {"status": "alive"}

    async def models() -> dict[str, list[str]]:
        return {"models": [name]}

    async def ready() -> dict[str, Any]:
        return {"name": name, "version": version, "ready": True}

    async def predict(request: Request) -> Any:
        declared = request.headers.get("content-length")
        limit = predictor.limits.max_request_bytes
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return error(413, f"the body is {int(declared):,} bytes; send at most {limit:,}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return error(413, f"the body is over {limit:,} bytes; send fewer or smaller images")
            chunks.append(chunk)
        try:
            return await run_in_threadpool(predictor.predict, b"".join(chunks))
        except RequestError as exc:
            return error(exc.status, str(exc))

    app.add_api_route("/", alive, methods=["GET"])
    app.add_api_route("/v1/models", models, methods=["GET"])
    for path in dict.fromkeys([ready_path, routes.health or ready_path]):
        app.add_api_route(path, ready, methods=["GET"])
    for path in dict.fromkeys([predict_path, routes.predict or predict_path]):
        app.add_api_route(path, predict, methods=["POST"])
    return app
