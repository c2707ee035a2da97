"""`python -m components.serve`: serve a registered model with the KServe v1 protocol.

On Vertex AI the container's settings come from the environment, read when the server starts:
AIP_HTTP_PORT (the port), AIP_HEALTH_ROUTE and AIP_PREDICT_ROUTE (routes answered besides the
KServe ones) and AIP_STORAGE_URI (the model's files, when --model is not given).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from types import FrameType
from typing import Any

from components.predict.cli import quiet_start_up
from components.spec.export import EXPORT_FORMATS, NATIVE

EXIT_OK, EXIT_ERROR = 0, 2
DEFAULT_PORT = 8080

EPILOG = """\
examples:
  python -m components.serve --model runs/registry/digits-classifier
  python -m components.serve --model runs/registry/digits-classifier/v2 --port 9000
  python -m components.serve --model runs/registry/pets-classifier --format onnx

MODEL_DIR is a registered model's folder (its champion, or its latest version when the registry
has no champion alias), a version folder, or a Model artifact folder. The server answers
GET /v1/models/NAME (ready) and POST /v1/models/NAME:predict with
{"instances": [{"image_bytes": {"b64": "..."}}]}; NAME is the registered name. Ctrl-C or
SIGTERM stops it after the requests in flight.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m components.serve",
        description="Serve a registered model over HTTP (KServe v1 protocol).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        metavar="MODEL_DIR",
        help="registered model, version or Model artifact folder, or a gs:// URI of one "
        "(default: AIP_STORAGE_URI)",
    )
    parser.add_argument(
        "--port", type=int, help=f"port to listen on (default: AIP_HTTP_PORT, else {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; 0.0.0.0 in a container)",
    )
    parser.add_argument(
        "--format",
        default=NATIVE,
        choices=[NATIVE, *EXPORT_FORMATS],
        help="which of the version's files to serve (default: the native model)",
    )
    parser.add_argument("--name", help="the model's name in the routes (default: registered name)")
    parser.add_argument(
        "--max-instances",
        type=int,
        default=None,
        metavar="N",
        help="instances accepted in one request (default 256)",
    )
    return parser


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_ERROR


def _port(args: argparse.Namespace, environ: dict[str, str]) -> int | str:
    """The port to bind, or a message saying what is wrong with it."""
    if args.port is not None:
        value, source = str(args.port), "--port"
    else:
        value, source = environ.get("AIP_HTTP_PORT", str(DEFAULT_PORT)), "AIP_HTTP_PORT"
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        return f"{source} is {value!r}; use a port number from 0 to 65535"
    return int(value)


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (port 0: a free one), for uvicorn to listen on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def example_request(url: str) -> str:
    """A curl command that sends one image file to `url` (a predict route)."""
    body = '{\\"instances\\": [{\\"image_bytes\\": {\\"b64\\": \\"$(base64 -w0 IMAGE.png)\\"}}]}'
    return f"curl -s -X POST {url} -H 'Content-Type: application/json' -d \"{body}\""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    environ = dict(os.environ)
    model = args.model or environ.get("AIP_STORAGE_URI")
    if not model:
        return _error("--model is required: a registered model folder, e.g. runs/registry/NAME")
    port = _port(args, environ)
    if isinstance(port, str):
        return _error(port)
    if args.max_instances is not None and args.max_instances < 1:
        return _error(f"--max-instances must be at least 1 (got {args.max_instances})")

    from components.models.artifact import ModelLoadError
    from components.serve.app import Limits, Predictor, Routes, create_app
    from components.serve.model import download, load_served, resolve_served
    from components.serve.protocol import kserve_routes

    try:
        local = download(model) if model.startswith("gs://") else model
        served = resolve_served(local)
        with quiet_start_up():
            classifier = load_served(served, args.format)
    except ModelLoadError as exc:
        return _error(str(exc))
    name = args.name or served.name
    limits = Limits() if args.max_instances is None else Limits(max_instances=args.max_instances)
    routes = Routes(environ.get("AIP_HEALTH_ROUTE"), environ.get("AIP_PREDICT_ROUTE"))
    app = create_app(name, served.version, Predictor(classifier, limits), routes)
    try:
        sock = bind(args.host, port)
    except OSError as exc:
        return _error(
            f"cannot listen on {args.host}:{port} ({exc.strerror or exc}); choose another --port"
        )
    bound = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    ready_path, predict_path = kserve_routes(name)
    if served.note:
        print(served.note)
    card = classifier.card
    label = f"{name} {served.version}".strip()
    print(
        f"serving {label} ({card.framework}, {args.format}, {len(card.class_names)} classes) "
        f"at http://{host}:{bound}{ready_path}"
    )
    print("  " + example_request(f"http://{host}:{bound}{predict_path}"), flush=True)
    return _serve(app, sock)


def _serve(app: Any, sock: socket.socket) -> int:
    """Run uvicorn on `sock` until SIGINT or SIGTERM, then finish the requests in flight."""
    import uvicorn

    stopped_by: list[int] = []

    # uvicorn shuts down gracefully on these signals and then raises them again with the
    # handlers it found installed: ours note the signal, so the process exits 0, quietly.
    def note(signum: int, frame: FrameType | None) -> None:
        stopped_by.append(signum)

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    if stopped_by:
        print(f"stopped ({signal.Signals(stopped_by[0]).name})", flush=True)
    return EXIT_OK
