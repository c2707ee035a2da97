"""`python -m components.serve` on a registered keras model whose answers are known (solid
colours): which version it serves, the KServe v1 protocol, Vertex AI's settings, refused
requests, and a clean stop. The server runs as the documented command, in its own process."""

from __future__ import annotations

import base64
import io
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from components.models.artifact import ModelLoadError
from components.register.champion import ALIASES_FILE
from components.register.run import register_local
from components.serve.model import resolve_served
from components.serve.protocol import RequestError, parse_request

CLASSES = ["red", "green", "blue"]
NAME = "colours-classifier"
REPO = Path(__file__).resolve().parents[2]
START_DEADLINE_S = 240  # a TensorFlow import on a busy machine
SERVING_LINE = re.compile(r"^serving .* at (?P<url>http://\S+)$")


def png(colour: tuple[int, int, int], size: tuple[int, int] = (20, 14)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def instance(data: bytes) -> dict[str, Any]:
    return {"image_bytes": {"b64": base64.b64encode(data).decode("ascii")}}


def post(url: str, body: bytes) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class Server:
    """The serve command in a child process on a free port (--port 0): its URL comes from the
    line it prints, and it counts as started once its readiness route answers."""

    def __init__(self, *args: str, env: dict[str, str] | None = None):
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "components.serve", *args],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line.rstrip("\n"))

    def started(self, readiness: str = "") -> str:
        """The printed URL (the readiness route) once it answers 200."""
        end = time.monotonic() + START_DEADLINE_S
        url = None
        while url is None:
            if time.monotonic() > end or self.process.poll() is not None:
                pytest.fail(f"the server did not start:\n{''.join(self.output)}")
            try:
                match = SERVING_LINE.match(self.lines.get(timeout=1))
            except queue.Empty:
                continue
            url = match.group("url") if match else None
        base = url.split("/v1/", 1)[0]
        while time.monotonic() < end:
            try:
                if get(base + (readiness or url.removeprefix(base)))[0] == 200:
                    return url
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.1)
        pytest.fail(f"{url} never became ready:\n{''.join(self.output)}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                self.process.kill()


@pytest.fixture(scope="module")
def registry(tmp_path_factory, colour_model_writer) -> Path:
    """A registry with two versions of the colour model (v2 swaps red and blue)."""
    root = tmp_path_factory.mktemp("registry")
    first = colour_model_writer(tmp_path_factory.mktemp("model"), CLASSES)
    second = colour_model_writer(tmp_path_factory.mktemp("model"), ["blue", "green", "red"])
    register_local(first, root, NAME, {"accuracy": 1.0})
    register_local(second, root, NAME, {"accuracy": 1.0}, allow_class_change=True)
    return root


@pytest.fixture(scope="module")
def server(registry):
    (registry / NAME / ALIASES_FILE).write_text(json.dumps({"champion": "v1"}))
    running = Server("--model", str(registry / NAME), "--port", "0")
    url = running.started()
    yield running, url
    running.stop()


# --- which version is served ------------------------------------------------------------


def test_the_champion_is_served_when_the_registry_names_one(registry, tmp_path):
    (registry / NAME / ALIASES_FILE).write_text(json.dumps({"champion": "v1"}))
    served = resolve_served(registry / NAME)
    assert (served.path.name, served.name, served.version) == ("v1", NAME, "v1")


def test_without_aliases_the_latest_version_is_served_and_said(registry):
    aliases = registry / NAME / ALIASES_FILE
    saved = aliases.read_text() if aliases.exists() else None
    aliases.unlink(missing_ok=True)
    try:
        served = resolve_served(registry / NAME)
    finally:
        if saved is not None:
            aliases.write_text(saved)
    assert served.version == "v2"
    assert served.note == (
        f"{NAME} has no champion alias ({ALIASES_FILE}): serving its latest version, v2"
    )


def test_a_version_folder_is_served_as_it_is(registry):
    served = resolve_served(registry / NAME / "v2")
    assert (served.version, served.note) == ("v2", "")


def test_a_champion_that_is_not_a_version_is_refused(tmp_path, registry):
    import shutil

    copy = tmp_path / NAME
    shutil.copytree(registry / NAME, copy)
    (copy / ALIASES_FILE).write_text(json.dumps({"champion": "v9"}))
    with pytest.raises(ModelLoadError, match="names champion 'v9', which is not a version"):
        resolve_served(copy)


# --- the protocol ------------------------------------------------------------------------


def test_the_server_prints_its_url_and_an_example(server):
    running, url = server
    printed = "".join(running.output)
    assert f"serving {NAME} v1 (keras, native, 3 classes) at {url}" in printed
    assert f"curl -s -X POST {url}:predict" in printed and "base64 -w0" in printed
    assert url.startswith("http://127.0.0.1:") and url.endswith(f"/v1/models/{NAME}")


def test_readiness_and_the_models_list(server):
    _, url = server
    base = url.split("/v1/", 1)[0]
    assert get(url) == (200, {"name": NAME, "version": "v1", "ready": True})
    assert get(base + "/v1/models") == (200, {"models": [NAME]})
    status, answer = get(base + "/v1/models/other")
    assert status == 404 and f"POST /v1/models/{NAME}:predict" in answer["error"]


def test_predictions_come_in_order_with_label_and_probabilities(server):
    _, url = server
    colours = [(240, 5, 5), (5, 5, 240), (5, 230, 5)]
    body = json.dumps({"instances": [instance(png(c)) for c in colours]}).encode()
    status, answer = post(url + ":predict", body)
    assert status == 200
    labels = [p["label"] for p in answer["predictions"]]
    assert labels == ["red", "blue", "green"]
    first = answer["predictions"][0]
    assert set(first["probabilities"]) == set(CLASSES) and first["index"] == 0
    assert first["probabilities"]["red"] > 0.99
    assert sum(first["probabilities"].values()) == pytest.approx(1, abs=1e-5)


def bomb(side: int) -> bytes:
    """A small valid PNG that declares side x side grey pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (side + 1) * 8)  # a few rows: decoding would expand the rest
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows)


GARBAGE = {
    "not JSON": (b"{instances: [", 400, "the body is not JSON"),
    "wrong shape": (b'{"inputs": [1, 2]}', 400, 'a JSON object with "instances"'),
    "a list, not an object": (b"[1, 2]", 400, 'a JSON object with "instances"'),
    "instance not an object": (b'{"instances": ["abc"]}', 400, "instances[0]: input should be"),
    "missing b64": (
        b'{"instances": [{"image_bytes": {}}]}',
        400,
        "instances[0].image_bytes.b64: field required",
    ),
    "unknown field": (
        b'{"instances": [{"image_bytes": {"b64": ""}, "key": 1}]}',
        400,
        "instances[0].key: extra inputs are not permitted",
    ),
    "empty list": (b'{"instances": []}', 400, '"instances" is empty'),
    "not base64": (
        json.dumps({"instances": [{"image_bytes": {"b64": "%%% not base64 %%%"}}]}).encode(),
        400,
        "instances[0].image_bytes.b64 is not base64",
    ),
    "not an image": (
        json.dumps({"instances": [instance(png((1, 2, 3))), instance(b"hello")]}).encode(),
        400,
        "instances[1].image_bytes.b64: not a readable image",
    ),
    "decompression bomb": (
        json.dumps({"instances": [instance(bomb(10_000))]}).encode(),
        400,
        "declares 10000 x 10000 pixels, more than the 40,000,000 this server decodes (a "
        "decompression bomb",
    ),
    "gigapixel bomb": (
        json.dumps({"instances": [instance(bomb(60_000))]}).encode(),
        400,
        "could be decompression bomb DOS attack. (a decompression bomb",
    ),
    "10,000 instances": (
        json.dumps({"instances": [instance(png((1, 2, 3)))] * 10_000}).encode(),
        413,
        "10000 instances in one request; send at most 256",
    ),
}


@pytest.mark.parametrize("case", sorted(GARBAGE))
def test_a_bad_request_gets_a_4xx_and_the_server_keeps_serving(server, case):
    _, url = server
    body, code, message = GARBAGE[case]
    status, answer = post(url + ":predict", body)
    assert status == code, answer
    assert message in answer["error"]
    good = json.dumps({"instances": [instance(png((250, 0, 0)))]}).encode()
    status, answer = post(url + ":predict", good)
    assert status == 200 and answer["predictions"][0]["label"] == "red"


def test_parse_request_names_the_field_of_a_bad_instance():
    with pytest.raises(RequestError) as caught:
        parse_request(b'{"instances": [{"image_bytes": {"b64": "x"}}, {"image_bytes": 3}]}')
    assert caught.value.status == 400
    assert str(caught.value).startswith("instances[1].image_bytes: input should be")


def test_an_oversized_body_is_refused_before_it_is_read(server):
    _, url = server
    request = urllib.request.Request(
        url + ":predict", data=b"x" * (65 * 2**20), headers={"Content-Type": "application/json"}
    )
    try:
        urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as exc:
        assert exc.code == 413 and "send at most" in json.loads(exc.read())["error"]
    except (ConnectionError, urllib.error.URLError):
        pass  # the server may answer and close before the client finished sending
    else:
        pytest.fail("a 65 MiB body was accepted")
    assert get(url)[0] == 200


# --- Vertex AI's settings, and stopping ---------------------------------------------------


def test_vertex_settings_are_read_when_the_server_starts(registry):
    routes = {
        "AIP_HEALTH_ROUTE": "/v1/endpoints/1/deployedModels/2",
        "AIP_PREDICT_ROUTE": "/v1/endpoints/1/deployedModels/2:predict",
    }
    running = Server("--model", str(registry / NAME / "v1"), env=routes | {"AIP_HTTP_PORT": "0"})
    try:
        url = running.started(readiness=routes["AIP_HEALTH_ROUTE"])
        base = url.split("/v1/", 1)[0]
        body = json.dumps({"instances": [instance(png((0, 0, 255)))], "parameters": {}}).encode()
        status, answer = post(base + routes["AIP_PREDICT_ROUTE"], body)
        assert status == 200 and answer["predictions"][0]["label"] == "blue"
        assert post(url + ":predict", body)[0] == 200  # the KServe routes stay
    finally:
        code = running.stop(signal.SIGINT)
    assert code == 0
    assert running.output[-1].strip() == "stopped (SIGINT)"
    assert "Traceback" not in "".join(running.output)


def test_sigterm_stops_the_server_cleanly(registry):
    running = Server("--model", str(registry / NAME / "v2"), "--port", "0")
    running.started()
    assert running.stop(signal.SIGTERM) == 0
    assert running.output[-1].strip() == "stopped (SIGTERM)"


def test_a_folder_that_is_no_model_exits_2_with_the_fix(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "components.serve", "--model", str(tmp_path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {tmp_path} holds no registered version")
    assert "Traceback" not in done.stderr


def test_a_gs_uri_is_copied_to_a_local_folder_first(registry, tmp_path, monkeypatch):
    """Vertex AI's AIP_STORAGE_URI: every object under the prefix, folders as they were."""
    from google.cloud import storage

    from components.serve.model import download

    source = registry / NAME / "v1"
    listed: list[tuple[str, str]] = []

    class Blob:
        def __init__(self, name: str):
            self.name = name

        def download_to_filename(self, filename: str) -> None:
            relative = self.name.removeprefix("registry/colours/v1/")
            Path(filename).write_bytes((source / relative).read_bytes())

    class Client:
        def list_blobs(self, bucket: str, prefix: str) -> list[Blob]:
            listed.append((bucket, prefix))
            files = sorted(p for p in source.rglob("*") if p.is_file())
            return [Blob(prefix)] + [Blob(prefix + str(p.relative_to(source))) for p in files]

    monkeypatch.setattr(storage, "Client", Client)
    local = download("gs://my-bucket/registry/colours/v1", tmp_path / "copy")

    assert listed == [("my-bucket", "registry/colours/v1/")]
    served = resolve_served(local)
    assert (served.name, served.version) == (NAME, "v1")
    assert (local / "model" / "keras" / "model.keras").is_file()
