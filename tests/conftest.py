from __future__ import annotations

import builtins
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

# Keep TensorFlow's start-up chatter out of test output; threads stay at their defaults.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def _print_as_it_was() -> Iterator[None]:
    """kfp.local indents a task's output by swapping builtins.print per task, and two tasks at
    once can leave its indenting print installed: no test hands that on to the next."""
    original = builtins.print
    yield
    builtins.print = original


def write_image_dataset(
    root: Path,
    levels: dict[str, int],
    per_class: int,
    shape: tuple[int, int] = (32, 32),
    noise: float = 20.0,
    image_size: tuple[int, int] | None = None,
    validation: float = 0.15,
    test: float = 0.15,
) -> Path:
    """Noisy flat PNGs, one class per brightness level, ingested into `root/dataset`."""
    from PIL import Image

    from components.ingest.run import ingest
    from components.spec import DataConfig

    rng = np.random.default_rng(0)
    for name, level in levels.items():
        folder = root / "images" / name
        folder.mkdir(parents=True)
        for index in range(per_class):
            pixels = np.clip(rng.normal(level, noise, (*shape, 3)), 0, 255).astype("uint8")
            Image.fromarray(pixels).save(folder / f"{index}.png")
    config = DataConfig(
        source=f"folder:{root / 'images'}",
        image_size=image_size or shape,
        splits={"validation": validation, "test": test},
    )
    ingest(config, root / "dataset", root / "quarantine.csv")
    return root / "dataset"


@pytest.fixture(scope="session")
def image_dataset() -> Callable[..., Path]:
    """Build a small class-per-brightness Dataset artifact: `image_dataset(root, levels, ...)`."""
    return write_image_dataset


def write_tiny_hf_checkpoint(folder: Path, kind: str) -> Path:
    """A tiny randomly initialised classifier (5 labels) and its image processor config, saved
    with save_pretrained: a checkpoint folder that needs no Hub download."""
    import torch
    from transformers import (
        ConvNextImageProcessorPil,
        ConvNextV2Config,
        ConvNextV2ForImageClassification,
        ViTConfig,
        ViTForImageClassification,
        ViTImageProcessorPil,
    )

    torch.manual_seed(0)
    if kind == "vit":
        config = ViTConfig(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            num_labels=5,
        )
        model: Any = ViTForImageClassification(config)
        processor: Any = ViTImageProcessorPil(
            size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3
        )
    else:
        config = ConvNextV2Config(
            num_stages=2, hidden_sizes=[16, 32], depths=[1, 1], patch_size=4, num_labels=5
        )
        model = ConvNextV2ForImageClassification(config)
        # ImageNet statistics and ConvNeXt's resize-then-crop: 36 x 36, centre 32 x 32.
        processor = ConvNextImageProcessorPil(size={"shortest_edge": 32}, crop_pct=0.875)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_hf_checkpoint() -> Callable[..., Path]:
    """Save a tiny ViT or ConvNeXt V2 checkpoint: `tiny_hf_checkpoint(folder, "vit")`."""
    return write_tiny_hf_checkpoint


class TensorBoardEvents:
    """Reads TensorBoard event files the way TensorBoard does."""

    @staticmethod
    def _accumulator(folder: Path) -> Any:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        accumulator = EventAccumulator(str(folder))
        accumulator.Reload()
        return accumulator

    def scalar_tags(self, folder: Path) -> set[str]:
        tags = self._accumulator(folder).Tags()
        # TensorFlow's summary ops write scalars as tensors; tensorboardX as scalars
        return set(tags.get("scalars", [])) | set(tags.get("tensors", []))

    def has_keras_graph(self, folder: Path) -> bool:
        """The Keras model graph (TensorBoard's conceptual graph, summary tag `keras`)."""
        return "keras" in self._accumulator(folder).Tags().get("tensors", [])


@pytest.fixture(scope="session")
def tensorboard_events() -> TensorBoardEvents:
    return TensorBoardEvents()


# --- preemption: a training process killed with SIGKILL, then restarted ----------------------

TRAIN_SCRIPT = """
import sys
from components.spec import ModelSpec
from components.train.run import train
dataset, spec, model_dir, checkpoints = sys.argv[1:5]
card = train(
    dataset, ModelSpec.model_validate_json(spec), 0, model_dir, model_dir + ".html", checkpoints
)
print("DONE", card.training["epochs_run"], "tensorflow" in sys.modules)
"""


@dataclass
class TrainProcess:
    """`components.train.run.train` of one spec in a fresh interpreter, to kill and restart."""

    argv: list[str]
    env: dict[str, str]

    def kill_when(self, ready: Callable[[], bool], deadline_s: float = 240) -> None:
        """Start it, wait until `ready()` (or it exits, or the deadline), then SIGKILL its
        whole process group, as a preempted machine would."""
        process = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + deadline_s
        while not ready() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def run(self, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run it to the end (the restart)."""
        return subprocess.run(
            self.argv, env=self.env, capture_output=True, text=True, timeout=timeout
        )


@pytest.fixture(scope="session")
def train_process() -> Callable[..., TrainProcess]:
    """`train_process(dataset, spec, model_dir, checkpoint_dir, **env)` -> a `TrainProcess`."""

    def make(
        dataset: Path, spec: Any, model_dir: Path, checkpoint_dir: Path, **env: str
    ) -> TrainProcess:
        argv = [
            sys.executable,
            "-c",
            TRAIN_SCRIPT,
            str(dataset),
            spec.model_dump_json(),
            str(model_dir),
            str(checkpoint_dir),
        ]
        return TrainProcess(argv, {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env})

    return make


# --- Model artifacts -------------------------------------------------------------------------


def write_model_card(
    folder: Path,
    framework: str,
    name: str,
    class_names: list[str],
    input_size: tuple[int, int] = (8, 8),
    preprocessing: str = "none",
    seed: int = 0,
) -> Path:
    """A `model_card.json` for a 3-channel model in `folder` (the model files are the test's)."""
    from components.common.model_card import ModelCard

    folder.mkdir(parents=True, exist_ok=True)
    ModelCard(
        framework=framework,
        name=name,
        seed=seed,
        class_names=class_names,
        input_size=input_size,
        channels=3,
        preprocessing=preprocessing,
    ).save(folder)
    return folder


def write_colour_model(folder: Path, class_names: list[str], size: int = 8) -> Path:
    """A keras Model artifact whose weights make the answer certain: the logits are 20 x the
    mean red, green and blue (in [0, 1]), so a solid colour is its class with p > 0.99;
    `class_names` name those three channels in order."""
    import keras

    folder.mkdir(parents=True, exist_ok=True)
    inputs = keras.Input(shape=(size, size, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    head = keras.layers.Dense(3, activation="softmax", name="probabilities")
    model = keras.Model(inputs, head(x))
    head.set_weights([20 * np.eye(3, dtype=np.float32), np.zeros(3, dtype=np.float32)])
    (folder / "keras").mkdir()
    model.save(folder / "keras" / "model.keras")
    return write_model_card(
        folder, "keras", "colours", class_names, (size, size), preprocessing="rescale_0_1"
    )


@pytest.fixture(scope="session")
def colour_model_writer() -> Callable[..., Path]:
    """`colour_model_writer(folder, class_names, size)`: the certain red/green/blue keras Model artifact."""
    return write_colour_model


@pytest.fixture(scope="session")
def model_card() -> Callable[..., Path]:
    """Write a Model card: `model_card(folder, "keras", "name", class_names, ...)`."""
    return write_model_card


def _assert_contains(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    """Every key of `expected` is in `actual` with the same value; nested mappings likewise."""
    for key, value in expected.items():
        assert key in actual, key
        if isinstance(value, dict):
            _assert_contains(actual[key], value)
        else:
            assert actual[key] == value, key


@pytest.fixture(scope="session")
def assert_contains() -> Callable[[dict[str, Any], dict[str, Any]], None]:
    """Asserts that a mapping holds every key of another with the same value, nested alike."""
    return _assert_contains


# --- hostile source trees: one corpus for every reader of a source ---------------------------


def _hostile_png(seed: int, colour: tuple[int, int, int] | None = None) -> bytes:
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.full((12, 12, 3), colour, dtype=np.uint8) if colour else None
    if pixels is None:
        pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A small PNG file that declares `width` x `height` pixels (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 4096))
        + chunk(b"IEND", b"")
    )


def _bytes_path(folder: Path, name: bytes) -> bytes:
    return os.path.join(os.fsencode(folder), name)


def _hostile_fifo(root: Path) -> None:
    os.mkfifo(root / "red" / "pipe.png")  # reading it would wait for a writer forever


def _hostile_device_link(root: Path) -> None:
    os.symlink("/dev/zero", root / "red" / "zero.png")  # endless bytes


def _hostile_non_utf8_names(root: Path) -> None:
    with open(_bytes_path(root / "red", b"caf\xe9.png"), "wb") as file:
        file.write(_hostile_png(7, (230, 10, 10)))
    with open(_bytes_path(root / "green", b"bad\xff.png"), "wb") as file:
        file.write(b"not an image")


def _hostile_non_utf8_class(root: Path) -> None:
    folder = _bytes_path(root, b"bl\xe9u")
    os.mkdir(folder)
    for index in range(3):
        with open(os.path.join(folder, b"%d.png" % index), "wb") as file:
            file.write(_hostile_png(20 + index, (10, 10, 240)))


def _hostile_symlink_loops(root: Path) -> None:
    os.symlink("..", root / "red" / "up")  # the source folder
    os.symlink(".", root / "green" / "self")  # itself
    os.symlink(root / "green", root / "red" / "green-images")  # another class


def _hostile_broken_link(root: Path) -> None:
    os.symlink("nowhere.png", root / "red" / "broken.png")


def _hostile_empty_class(root: Path) -> None:
    (root / "blue").mkdir()


def _hostile_hidden_only_class(root: Path) -> None:
    (root / "blue").mkdir()
    (root / "blue" / ".thumbs.png").write_bytes(_hostile_png(9))


def _hostile_huge_image(root: Path) -> None:
    (root / "red" / "huge.png").write_bytes(_png_header_only(20_000, 20_000))


HOSTILE_TREES: dict[str, Callable[[Path], None]] = {
    "fifo": _hostile_fifo,
    "device link": _hostile_device_link,
    "non-UTF-8 file names": _hostile_non_utf8_names,
    "non-UTF-8 class folder": _hostile_non_utf8_class,
    "symlink loops": _hostile_symlink_loops,
    "broken link": _hostile_broken_link,
    "empty class": _hostile_empty_class,
    "hidden-only class": _hostile_hidden_only_class,
    "huge image": _hostile_huge_image,
}


def write_hostile_tree(root: Path, case: str) -> Path:
    """A class-per-folder source (red, green: 3 solid-colour PNGs each) plus one hostile thing."""
    for index, (name, colour) in enumerate({"red": (230, 10, 10), "green": (10, 220, 10)}.items()):
        (root / name).mkdir(parents=True)
        for number in range(3):
            (root / name / f"{number}.png").write_bytes(_hostile_png(10 * index + number, colour))
    HOSTILE_TREES[case](root)
    return root


@pytest.fixture(params=sorted(HOSTILE_TREES))
def hostile_tree(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Each hostile source tree in turn (HOSTILE_TREES names them), written under tmp_path."""
    return write_hostile_tree(tmp_path / "source", request.param)


@dataclass
class MlflowServer:
    """A real MLflow tracking server on a loopback port, with a sqlite backend."""

    uri: str
    process: subprocess.Popen

    def stop(self) -> None:
        """Stop the server (and its uvicorn worker) and wait until it has gone."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=60)

    def client(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_mlflow_server(folder: Path, deadline_s: float = 180.0) -> MlflowServer:
    """`mlflow server` with a sqlite store under `folder`; returns once /health answers."""
    import urllib.error
    import urllib.request

    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = (folder / "server.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{folder / 'mlflow.db'}",
            "--default-artifact-root",
            str(folder / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stop() ends the server and its worker
    )
    server = MlflowServer(uri=f"http://127.0.0.1:{port}", process=process)
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {(folder / 'server.log').read_text()}")
        try:
            with urllib.request.urlopen(f"{server.uri}/health", timeout=5) as answer:
                if answer.status == 200:
                    return server
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"mlflow server did not answer /health in {deadline_s:.0f} s")


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real MLflow tracking server for the module's tests, stopped after them."""
    pytest.importorskip("mlflow", reason="the dev extra installs the MLflow server")
    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow"))
    yield server
    server.stop()


@pytest.fixture
def dead_mlflow_uri() -> str:
    """A tracking URI on a loopback port nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


class VertexStub:
    """Just enough of the Vertex AI REST API for PipelineJob, Model and Endpoint lists and
    Vertex AI Experiments (contexts, their runs and updates); records every request.

    `refuse` set: every request is answered 403 with that message."""

    project, location = "my-project", "us-central1"

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.resources: dict[str, dict[str, Any]] = {}
        self.lists: dict[str, list[dict[str, Any]]] = {
            "models": [],
            "endpoints": [],
            "tensorboards": [],
            "timeSeries": [],
        }
        self.job_updates: list[dict[str, Any]] = []  # applied one per GET of a pipeline job
        self.refuse_create: str | None = None
        self.refuse: str | None = None
        self.bucket_checks: list[dict[str, Any]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def creates(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "POST" and "pipelineJobs" in r["path"]]

    def check_bucket(self, **kwargs: Any) -> None:
        self.bucket_checks.append(kwargs)

    def _handler(stub) -> type[BaseHTTPRequestHandler]:  # noqa: N805
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PATCH(self) -> None:
                self._serve("PATCH")

            def _reply(self, code: int, payload: dict[str, Any]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                url = urlsplit(self.path)
                path, query = url.path.removeprefix("/v1/"), parse_qs(url.query)
                stub.requests.append(
                    {
                        "method": method,
                        "path": path,
                        "query": query,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    }
                )
                collection = path.rsplit("/", 1)[-1]
                parent = "/".join(path.split("/")[:4])  # projects/P/locations/L
                if stub.refuse:
                    return self._reply(
                        403,
                        {
                            "error": {
                                "code": 403,
                                "message": stub.refuse,
                                "status": "PERMISSION_DENIED",
                            }
                        },
                    )
                if method == "PATCH" and path in stub.resources:
                    stub.resources[path].update(body)
                    return self._reply(200, stub.resources[path])
                if method == "GET" and path.endswith("metadataStores/default"):
                    return self._reply(200, {"name": path})
                if method == "GET" and collection in stub.lists:
                    return self._reply(200, {collection: stub.lists[collection]})
                if method == "GET" and path in stub.resources:
                    resource = stub.resources[path]
                    if "pipelineJobs/" in path and stub.job_updates:
                        resource.update(stub.job_updates.pop(0))
                    return self._reply(200, resource)
                if method == "POST" and collection == "models:upload":  # a finished operation
                    model = f"{parent}/models/{len(stub.requests)}"
                    operation = {"name": f"{parent}/operations/{len(stub.requests)}", "done": True}
                    return self._reply(200, {**operation, "response": {"model": model}})
                if method == "POST" and ":" in collection:  # e.g. contexts/x:addContextChildren
                    return self._reply(200, {})
                ids = [v[0] for k, v in query.items() if k.endswith("Id")]
                if method == "POST" and collection == "timeSeries":  # named by the service
                    ids = [body["displayName"]]
                if method == "POST" and ids:
                    if collection == "pipelineJobs" and stub.refuse_create:
                        return self._reply(
                            400,
                            {
                                "error": {
                                    "code": 400,
                                    "message": stub.refuse_create,
                                    "status": "INVALID_ARGUMENT",
                                }
                            },
                        )
                    name = f"{path}/{ids[0]}"
                    resource = dict(body, name=name)
                    if collection == "pipelineJobs":
                        context = f"{parent}/metadataStores/default/contexts/{ids[0]}"
                        resource.update(
                            state="PIPELINE_STATE_PENDING",
                            jobDetail={"pipelineRunContext": {"name": context}},
                        )
                    stub.resources[name] = resource
                    return self._reply(200, resource)
                return self._reply(
                    404, {"error": {"code": 404, "message": "not in stub", "status": "NOT_FOUND"}}
                )

        return Handler


@pytest.fixture
def vertex_stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[VertexStub]:
    """The Vertex AI stub, the aiplatform client's endpoint (REST, anonymous); only loopback
    addresses can be reached while it runs."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform
    from google.cloud.aiplatform import initializer
    from google.cloud.aiplatform.metadata import metadata

    connect = socket.socket.connect

    def local_only(sock: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "localhost"):
            raise AssertionError(f"connection to {address} outside the stub")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", local_only)
    stub = VertexStub()
    aiplatform.init(
        project=stub.project,
        location=stub.location,
        api_endpoint=stub.endpoint,
        api_transport="rest",
        credentials=AnonymousCredentials(),
    )
    yield stub
    stub.close()
    # the SDK's settings and its current experiment are process-wide
    initializer.global_config.__init__()
    metadata._experiment_tracker.reset()
