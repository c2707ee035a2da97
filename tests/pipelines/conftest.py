"""Helpers the pipeline tests share: reading a compiled spec's parts, the credentials scan, and a
stub of an OCI registry's manifest API on 127.0.0.1 for the submits that pin images."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

# What must never appear in a compiled package or a submitted request.
CREDENTIALS = re.compile(
    r"AKIA[0-9A-Z]{16}"  # AWS access key id
    r"|AIza[0-9A-Za-z_-]{35}"  # Google API key
    r"|ya29\.[0-9A-Za-z_-]+"  # Google OAuth access token
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|\"?private_key(_id)?\"?\s*:"  # service account key JSON
    r"|gh[pousr]_[0-9A-Za-z]{36}"  # GitHub token
    r"|hf_[0-9A-Za-z]{30,}"  # Hugging Face token
    r"|xox[abpr]-[0-9A-Za-z-]{10,}"  # Slack token
    r"|(password|passwd|secret|api[_-]?key|access[_-]?token)\s*[:=]",
    re.IGNORECASE,
)


def container_accelerator(container: dict[str, Any]) -> tuple[str, int] | None:
    """(type, count) of a compiled container's accelerator; KFP versions name the keys
    differently."""
    spec = container.get("resources", {}).get("accelerator")
    if not spec:
        return None
    kind = spec.get("resourceType") or spec.get("type")
    count = spec.get("resourceCount") or spec.get("count")
    return kind, int(count)


@pytest.fixture(scope="session")
def credentials() -> re.Pattern[str]:
    return CREDENTIALS


@pytest.fixture(scope="session")
def accelerator() -> Callable[[dict[str, Any]], tuple[str, int] | None]:
    return container_accelerator


# --- a registry stub ---------------------------------------------------------------------

MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


@dataclass
class RegistryStub:
    """GET /v2/<name>/manifests/<tag> answers a manifest and its Docker-Content-Digest; with
    `token` set, a Bearer challenge first and GET /token hands out `token` for Basic `login`."""

    url: str = ""
    token: str | None = None
    login: tuple[str, str] | None = None
    missing: set[str] = field(default_factory=set)  # "name:tag" answered 404
    digest_header: bool = True
    requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")

    @staticmethod
    def manifest(name: str, tag: str) -> bytes:
        return json.dumps(
            {"schemaVersion": 2, "mediaType": MANIFEST_LIST, "of": f"{name}:{tag}"}
        ).encode()

    def digest(self, name: str, tag: str) -> str:
        return "sha256:" + hashlib.sha256(self.manifest(name, tag)).hexdigest()

    def manifests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if "/manifests/" in r["path"]]

    def route(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if path.startswith("/token"):
            expected = (
                "Basic " + base64.b64encode(":".join(self.login).encode()).decode()
                if self.login
                else None
            )
            if expected and headers.get("authorization") != expected:
                return 401, {}, b'{"errors": [{"code": "UNAUTHORIZED"}]}'
            return (
                200,
                {"Content-Type": "application/json"},
                json.dumps({"token": self.token}).encode(),
            )
        name, _, tag = path.removeprefix("/v2/").partition("/manifests/")
        if self.token and headers.get("authorization") != f"Bearer {self.token}":
            challenge = f'Bearer realm="{self.url}/token",service="stub-registry"'
            return 401, {"WWW-Authenticate": challenge}, b'{"errors": [{"code": "UNAUTHORIZED"}]}'
        if f"{name}:{tag}" in self.missing:
            return 404, {}, b'{"errors": [{"code": "MANIFEST_UNKNOWN"}]}'
        body = self.manifest(name, tag)
        reply = {"Content-Type": MANIFEST_LIST}
        if self.digest_header:
            reply["Docker-Content-Digest"] = self.digest(name, tag)
        return 200, reply, body


@pytest.fixture
def registry() -> Iterator[RegistryStub]:
    stub = RegistryStub()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            stub.requests.append({"path": self.path, "headers": headers})
            status, reply, body = stub.route(self.path, headers)
            self.send_response(status)
            for key, value in reply.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    yield stub
    server.shutdown()
    server.server_close()


@pytest.fixture
def every_registry_is(registry, monkeypatch) -> RegistryStub:
    """Send the lookups of every registry host (e.g. REGION-docker.pkg.dev) to the stub."""
    from pipelines.targets import digests

    monkeypatch.setattr(digests.Reference, "base_url", property(lambda self: registry.url))
    return registry
