"""`submit.py --target kfp` against a stub of the KFP API server, through the real kfp.Client.

The stub listens on 127.0.0.1 (a random port, a thread of this process), answers the v2beta1 REST
calls the way KFP 2.17 does, and records every request, so the tests can assert on what the
client really sends: health check, pipeline upload (multipart), version upload, experiment
lookup and creation, run creation with parameters and pipeline root, run polling.
"""

from __future__ import annotations

import email
import email.policy
import http.server
import json
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from pipelines.cli import main
from pipelines.targets.kfp import KfpTarget

API = "/apis/v2beta1"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def files(self) -> dict[str, tuple[str, bytes]]:
        """Multipart form: field name -> (file name, content)."""
        head = f"Content-Type: {self.headers['content-type']}\r\n\r\n".encode()
        message = email.message_from_bytes(head + self.body, policy=email.policy.HTTP)
        files = {}
        for part in message.iter_parts():
            name = str(part.get_param("name", header="content-disposition"))
            content = part.get_payload(decode=True)
            assert isinstance(content, bytes)
            files[name] = (str(part.get_filename()), content)
        return files


@dataclass
class KfpStub:
    """The parts of the KFP 2.17 API server that kfp.Client uses to submit and watch a run."""

    url: str = ""
    version: str = "2.17.0"
    requests: list[Request] = field(default_factory=list)
    pipelines: dict[str, str] = field(default_factory=dict)  # display name -> id
    versions: dict[str, list[str]] = field(default_factory=dict)  # pipeline id -> version ids
    experiments: dict[str, str] = field(default_factory=dict)  # display name -> id
    run_states: list[dict[str, Any]] = field(default_factory=lambda: [{"state": "PENDING"}])
    failures: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)

    def calls(self, method: str | None = None, path: str | None = None) -> list[Request]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and (path is None or r.path == API + path)
        ]

    def route(self, request: Request) -> tuple[int, Any]:
        key = (request.method, request.path.removeprefix(API))
        if key in self.failures:
            return self.failures[key]
        method, path = key
        if key == ("GET", "/healthz"):
            return 200, {"commit_sha": "stub", "tag_name": self.version, "multi_user": False}
        if key == ("GET", "/pipelines"):
            return 200, self._list("pipelines", "pipeline_id", self.pipelines, request)
        if key == ("POST", "/pipelines/upload"):
            name = request.query["name"]
            pipeline_id = self.pipelines[name] = f"pipeline-{len(self.pipelines) + 1}"
            self.versions[pipeline_id] = [f"{pipeline_id}-version-1"]
            return 200, {"pipeline_id": pipeline_id, "display_name": name}
        if key == ("POST", "/pipelines/upload_version"):
            pipeline_id = request.query["pipelineid"]
            versions = self.versions.setdefault(pipeline_id, [])
            versions.append(f"{pipeline_id}-version-{len(versions) + 1}")
            return 200, {
                "pipeline_id": pipeline_id,
                "pipeline_version_id": versions[-1],
                "display_name": request.query["name"],
            }
        if method == "GET" and path.startswith("/pipelines/") and path.endswith("/versions"):
            pipeline_id = path.split("/")[2]
            items = [
                {"pipeline_id": pipeline_id, "pipeline_version_id": v}
                for v in self.versions.get(pipeline_id, [])
            ]
            return 200, {"pipeline_versions": items, "total_size": len(items)} if items else {}
        if key == ("GET", "/experiments"):
            return 200, self._list("experiments", "experiment_id", self.experiments, request)
        if key == ("POST", "/experiments"):
            name = request.json()["display_name"]
            experiment_id = self.experiments[name] = f"experiment-{len(self.experiments) + 1}"
            return 200, {"experiment_id": experiment_id, "display_name": name}
        if key == ("POST", "/runs"):
            return 200, {**request.json(), "run_id": "run-1", "state": "PENDING"}
        if key == ("GET", "/runs/run-1"):
            # Each look at the run moves it one state on; the last state stays.
            state = self.run_states.pop(0) if len(self.run_states) > 1 else self.run_states[0]
            return 200, {"run_id": "run-1", **state}
        return 404, {"error": f"no route {method} {path}", "code": 5}

    @staticmethod
    def _list(kind: str, id_key: str, items: dict[str, str], request: Request) -> dict[str, Any]:
        (predicate,) = json.loads(request.query["filter"])["predicates"]
        assert predicate["key"] == "display_name"
        name = predicate["stringValue"]
        if name not in items:
            return {}
        return {kind: [{id_key: items[name], "display_name": name}], "total_size": 1}


@pytest.fixture
def stub(monkeypatch, tmp_path) -> Iterator[KfpStub]:
    import kfp

    api = KfpStub()

    class Handler(http.server.BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            request = Request(
                self.command,
                parts.path,
                dict(urllib.parse.parse_qsl(parts.query)),
                {k.lower(): v for k, v in self.headers.items()},
                self.rfile.read(length),
            )
            api.requests.append(request)
            status, payload = api.route(request)
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    # The client must not pick up a context file or endpoints of the machine running the tests.
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "no-context.json"))
    for name in ("KF_PIPELINES_ENDPOINT", "KF_PIPELINES_UI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(KfpTarget, "poll_seconds", 0.01)
    monkeypatch.chdir(tmp_path)
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def submit(stub: KfpStub, *extra: str) -> int:
    return main(["--experiment", "digits", "--target", "kfp", "--host", stub.url, *extra])


def documents(package: bytes) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(package) if d is not None]


def task(name: str, state: str, start: str = "", end: str = "") -> dict[str, Any]:
    detail: dict[str, Any] = {"task_id": f"task-{name}", "display_name": name, "state": state}
    if start:
        detail["start_time"] = start
    if end:
        detail["end_time"] = end
    return detail


# --- submit --------------------------------------------------------------------------------


def test_first_submit_uploads_the_pipeline_and_creates_the_experiment(stub, capsys):
    assert submit(stub, "--json") == 0

    paths = [(r.method, r.path.removeprefix(API)) for r in stub.requests]
    assert paths == [
        ("GET", "/healthz"),  # ours: fail fast with a clear message
        ("GET", "/healthz"),  # kfp.Client's
        ("GET", "/pipelines"),  # is there a pipeline of that name?
        ("POST", "/pipelines/upload"),
        ("GET", "/pipelines/pipeline-1/versions"),  # the id of the version the upload made
        ("GET", "/experiments"),  # is there an experiment of that name?
        ("POST", "/experiments"),
        ("POST", "/runs"),
    ]
    (lookup,) = stub.calls("GET", "/pipelines")
    assert json.loads(lookup.query["filter"])["predicates"][0]["stringValue"] == "imgclf-digits"
    (upload,) = stub.calls("POST", "/pipelines/upload")
    assert upload.query["name"] == "imgclf-digits"
    assert upload.headers["content-type"].startswith("multipart/form-data")
    filename, package = upload.files()["uploadfile"]
    assert filename.endswith(".yaml")
    spec, platform = documents(package)
    assert spec["pipelineInfo"]["name"] == "imgclf-digits"
    assert "kubernetes" in platform["platforms"]
    (experiment,) = stub.calls("POST", "/experiments")
    assert experiment.json()["display_name"] == "imgclf-digits"
    result = json.loads(capsys.readouterr().out)
    assert result == {
        "experiment": "digits",
        "target": "kfp",
        "status": "SUBMITTED",
        "run": "run-1",
        "url": f"{stub.url}/#/runs/details/run-1",
        "pipeline": "pipeline-1",
        "pipeline_version": "pipeline-1-version-1",
        "kfp_experiment": "experiment-1",
        "pipeline_root": "minio://mlpipeline/v2/artifacts",
        # loaded into kind by `make kind-load`: no registry to pin it from, it stays a tag
        "images": {"images.cpu": "image-classification-cpu:latest"},
    }


def test_registry_images_are_compiled_with_their_digests(stub, registry, capsys):
    cpu, gpu = f"{registry.host}/imgclf/cpu:0123abc", f"{registry.host}/imgclf/gpu:0123abc"

    code = submit(
        stub,
        "--set",
        f"images.cpu={cpu}",
        "--set",
        f"images.gpu={gpu}",
        "--set",
        "resources.kfp.gpus=1",
        "--json",
    )

    assert code == 0
    (upload,) = stub.calls("POST", "/pipelines/upload")
    spec, _ = documents(upload.files()["uploadfile"][1])
    executors = spec["deploymentSpec"]["executors"].values()
    images = {e["container"]["image"] for e in executors if "container" in e}
    pinned_cpu = f"{registry.host}/imgclf/cpu@{registry.digest('imgclf/cpu', '0123abc')}"
    pinned_gpu = f"{registry.host}/imgclf/gpu@{registry.digest('imgclf/gpu', '0123abc')}"
    assert images == {pinned_cpu, pinned_gpu}
    captured = capsys.readouterr()
    assert json.loads(captured.out)["images"] == {
        "images.cpu": pinned_cpu,
        "images.gpu": pinned_gpu,
    }
    assert f"pinned images.cpu: {cpu} is sha256:" in captured.err


def test_the_run_carries_parameters_pipeline_root_and_the_version(stub):
    assert submit(stub, "--set", "gate.min=0.5", "--set", "kfp.pipeline_root=s3://b/kfp") == 0

    (create,) = stub.calls("POST", "/runs")
    run = create.json()
    assert run["experiment_id"] == "experiment-1"
    assert run["display_name"].startswith("imgclf-digits-")
    assert run["pipeline_version_reference"] == {
        "pipeline_id": "pipeline-1",
        "pipeline_version_id": "pipeline-1-version-1",
    }
    assert "pipeline_spec" not in run  # the run names the uploaded version, it does not inline it
    config = run["runtime_config"]
    assert config["pipeline_root"] == "s3://b/kfp"
    parameters = config["parameters"]
    assert parameters["gate_min"] == 0.5
    assert parameters["gate_metric"] == "accuracy"
    assert parameters["model_name"] == "digits-classifier"
    assert parameters["registry_root"] == "/mnt/registry"
    assert parameters["data_config"]["source"] == "sklearn:digits"
    assert parameters["reference"]["value"] == 0.95


def test_an_existing_pipeline_gets_a_new_version_in_the_existing_experiment(stub, capsys):
    stub.pipelines["imgclf-digits"] = "pipeline-7"
    stub.versions["pipeline-7"] = ["pipeline-7-version-1"]
    stub.experiments["imgclf-digits"] = "experiment-3"

    assert submit(stub, "--json") == 0

    assert stub.calls("POST", "/pipelines/upload") == []
    assert stub.calls("POST", "/experiments") == []
    (upload,) = stub.calls("POST", "/pipelines/upload_version")
    assert upload.query["pipelineid"] == "pipeline-7"
    assert upload.query["name"].startswith("imgclf-digits-")
    spec, _ = documents(upload.files()["uploadfile"][1])
    assert spec["pipelineInfo"]["name"] == "imgclf-digits"
    (create,) = stub.calls("POST", "/runs")
    assert create.json()["experiment_id"] == "experiment-3"
    assert create.json()["pipeline_version_reference"]["pipeline_version_id"] == (
        "pipeline-7-version-2"
    )
    result = json.loads(capsys.readouterr().out)
    assert (result["pipeline"], result["pipeline_version"]) == (
        "pipeline-7",
        "pipeline-7-version-2",
    )


def test_the_summary_prints_the_ui_link_and_nothing_of_the_clients_chatter(stub, capsys):
    assert submit(stub, "--host", stub.url + "/") == 0

    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "experiment digits on kfp: SUBMITTED",
        f"run: {stub.url}/#/runs/details/run-1",
    ]
    # kfp.Client prints its own links; they go to stderr with the other logs.
    assert "Run details:" in captured.err


def test_no_cache_reaches_the_uploaded_package(stub):
    assert submit(stub, "--no-cache") == 0

    (upload,) = stub.calls("POST", "/pipelines/upload")
    spec, _ = documents(upload.files()["uploadfile"][1])
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["ingest"].get("cachingOptions", {}).get("enableCache") is not True


# --- --wait --------------------------------------------------------------------------------


def test_wait_prints_each_state_change_until_the_run_succeeds(stub, capsys):
    t0, t1 = "2026-01-01T10:00:00Z", "2026-01-01T10:00:30Z"
    stub.run_states = [
        {"state": "PENDING"},
        {"state": "RUNNING", "run_details": {"task_details": [task("ingest", "RUNNING", t0)]}},
        {"state": "RUNNING", "run_details": {"task_details": [task("ingest", "RUNNING", t0)]}},
        {
            "state": "SUCCEEDED",
            "run_details": {
                "task_details": [
                    task("ingest", "SUCCEEDED", t0, t1),
                    task("register", "SUCCEEDED", t1, "2026-01-01T10:00:32Z"),
                ]
            },
        },
    ]

    assert submit(stub, "--wait", "--json") == 0

    captured = capsys.readouterr()
    changes = [line.partition("  ")[2] for line in captured.err.splitlines() if line[:2].isdigit()]
    assert changes == [
        "run: PENDING",
        "run: RUNNING",
        "  ingest: RUNNING",
        "run: SUCCEEDED",
        "  ingest: SUCCEEDED",
        "  register: SUCCEEDED",
    ]
    assert len(stub.calls("GET", "/runs/run-1")) == 4
    result = json.loads(captured.out)
    assert result["status"] == result["state"] == "SUCCEEDED"
    assert result["tasks"] == [
        {"name": "ingest", "status": "SUCCEEDED", "seconds": 30.0},
        {"name": "register", "status": "SUCCEEDED", "seconds": 2.0},
    ]


def test_wait_on_a_failed_run_exits_1_with_the_reason(stub, capsys):
    stub.run_states = [
        {"state": "RUNNING"},
        {"state": "FAILED", "error": {"code": 9, "message": "task train keras failed"}},
    ]

    assert submit(stub, "--wait") == 1

    out = capsys.readouterr().out
    assert "experiment digits on kfp: FAILED" in out
    assert "the run ended FAILED: task train keras failed" in out
    assert f"{stub.url}/#/runs/details/run-1" in out


def test_a_canceled_run_counts_as_failed(stub, capsys):
    stub.run_states = [{"state": "CANCELED"}]

    assert submit(stub, "--wait", "--json") == 1

    result = json.loads(capsys.readouterr().out)
    assert (result["status"], result["state"]) == ("FAILED", "CANCELED")


def test_wait_gives_up_after_the_api_stops_answering(stub, capsys):
    stub.failures[("GET", "/runs/run-1")] = (503, {"error": "upstream connect error"})

    assert submit(stub, "--wait") == 1

    err = capsys.readouterr().err
    assert "HTTP 503" in err
    assert "stopped waiting, the run goes on:" in err
    assert "Traceback" not in err
    assert len(stub.calls("GET", "/runs/run-1")) == KfpTarget.lost_polls


# --- errors: a clear message, no traceback -------------------------------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_connection_refused_exits_1_and_says_what_to_start(capsys):
    host = f"http://127.0.0.1:{closed_port()}"

    assert main(["--experiment", "digits", "--target", "kfp", "--host", host]) == 1

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines()[-1].startswith(
        f"error: cannot reach the KFP API at {host} (connection refused)"
    )
    assert "make kind-up" in captured.err
    assert "Traceback" not in captured.err


def test_a_server_that_is_not_kfp_exits_1(stub, capsys):
    stub.failures[("GET", "/healthz")] = (404, {"error": "not found"})

    assert submit(stub) == 1

    err = capsys.readouterr().err
    assert f"{stub.url} is not a KFP API" in err
    assert "http://localhost:8080" in err
    assert len(stub.requests) == 1  # nothing uploaded


def test_an_api_that_is_not_ready_exits_1(stub, capsys):
    stub.failures[("GET", "/healthz")] = (503, {"error": "starting"})

    assert submit(stub) == 1

    err = capsys.readouterr().err
    assert "is not ready (/apis/v2beta1/healthz answered HTTP 503" in err
    assert "kubectl -n kubeflow get pods" in err


def test_an_api_error_exits_1_with_the_servers_message(stub, capsys):
    stub.failures[("POST", "/runs")] = (
        400,
        {"error": "bad run", "code": 3, "message": "Invalid input error: pipeline_root is invalid"},
    )

    assert submit(stub) == 1

    captured = capsys.readouterr()
    assert captured.err.splitlines()[-1] == (
        f"error: the KFP API at {stub.url} refused the request: HTTP 400 Bad Request: "
        "Invalid input error: pipeline_root is invalid"
    )
    assert "Traceback" not in captured.err
    assert captured.out == ""


def test_an_old_server_gets_a_warning(stub, capsys):
    stub.version = "2.5.0"

    assert submit(stub) == 0

    assert "warning: KFP at" in capsys.readouterr().err


@pytest.mark.parametrize("host", ["localhost:8080", "ftp://localhost", "http://"])
def test_a_host_that_is_not_a_url_exits_2_before_any_request(host, capsys, monkeypatch):
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("opened a connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)

    assert main(["--experiment", "digits", "--target", "kfp", "--host", host]) == 2

    err = capsys.readouterr().err
    assert "is not an http(s) URL" in err
    assert "--host http://localhost:8080" in err
