"""The command line (`python pipelines/submit.py`), called in-process through `main(argv)`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.cli import main
from pipelines.config import list_experiments

REPO_ROOT = Path(__file__).resolve().parents[2]
FLAGS = (
    "--experiment",
    "--set",
    "--target",
    "--compile-only",
    "--list",
    "--no-cache",
    "--fresh",
    "--runs-dir",
    "--host",
    "--wait",
    "--json",
)


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """Run every test in an empty folder, with outgoing connections refused."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the CLI opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.chdir(tmp_path)


class FakeAiplatform(types.ModuleType):
    """Stands in for google.cloud.aiplatform and records what the vertex target asks of it."""

    def __init__(self) -> None:
        super().__init__("google.cloud.aiplatform")
        self.calls: list[tuple[str, dict[str, Any]]] = []
        fake = self

        class PipelineJob:
            def __init__(self, **kwargs: Any) -> None:
                fake.calls.append(("PipelineJob", kwargs))
                self.template = Path(kwargs["template_path"]).read_text()
                self.name = "run-1"
                self.resource_name = "projects/p/locations/us-central1/pipelineJobs/run-1"

            def submit(self, **kwargs: Any) -> None:
                fake.calls.append(("submit", kwargs))

            def wait(self) -> None:
                fake.calls.append(("wait", {}))

        self.PipelineJob = PipelineJob

    def init(self, **kwargs: Any) -> None:
        self.calls.append(("init", kwargs))


@pytest.fixture
def aiplatform(monkeypatch):
    import google.cloud

    fake = FakeAiplatform()
    monkeypatch.setitem(sys.modules, "google.cloud.aiplatform", fake)
    # Where the real package was imported already, `from google.cloud import aiplatform` reads
    # the attribute first.
    monkeypatch.setattr(google.cloud, "aiplatform", fake, raising=False)
    return fake


# --- help and --list -----------------------------------------------------------------------


def test_help_mentions_every_flag(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--help"])

    assert caught.value.code == 0
    out = capsys.readouterr().out
    for flag in FLAGS:
        assert flag in out
    assert "exit codes" in out


def test_list_prints_every_experiment_with_its_description(capsys):
    assert main(["--list"]) == 0

    lines = capsys.readouterr().out.splitlines()
    experiments = list_experiments()
    assert len(lines) == len(experiments)
    for line, (name, description) in zip(lines, experiments.items(), strict=True):
        assert line.split()[0] == name
        assert line.endswith(description)


def test_list_as_json(capsys):
    assert main(["--list", "--json"]) == 0

    listed = json.loads(capsys.readouterr().out)
    assert listed == list_experiments()
    assert "digits" in listed
    assert all(isinstance(d, str) and d for d in listed.values())


# --- usage and config errors: exit code 2, nothing runs ------------------------------------


def test_bad_config_exits_2_with_the_message_on_stderr(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data": {"source": "sklearn:digits", "channels": 2},
                "models": [{"name": "cnn", "architecture": "small_cnn"}],
            }
        )
    )

    assert main(["--experiment", str(path), "--compile-only", "out.yaml"]) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"error: {path}: 1 problem(s)")
    assert "data.channels: Input should be 1 or 3 (got 2)" in captured.err
    assert "Traceback" not in captured.err
    assert not (tmp_path / "out.yaml").exists()


def test_bad_override_exits_2(capsys):
    assert (
        main(["--experiment", "digits", "--set", "models.0.epochs=0", "--compile-only", "x.yaml"])
        == 2
    )

    captured = capsys.readouterr()
    assert "models.0.epochs:" in captured.err
    assert "Traceback" not in captured.err
    assert not Path("x.yaml").exists()


def test_override_without_equals_exits_2(capsys):
    assert main(["--experiment", "digits", "--set", "models.0.epochs"]) == 2

    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_unknown_experiment_exits_2_and_lists_the_names(capsys):
    assert main(["--experiment", "imagenet"]) == 2

    err = capsys.readouterr().err
    assert "unknown experiment 'imagenet'" in err
    for name in list_experiments():
        assert name in err
    assert "Traceback" not in err


def test_missing_experiment_file_exits_2(capsys):
    assert main(["--experiment", "no/such/file.yaml"]) == 2

    assert "does not exist" in capsys.readouterr().err


def test_missing_experiment_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as caught:
        main([])

    assert caught.value.code == 2
    assert "--experiment is required" in capsys.readouterr().err


def test_unknown_target_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--experiment", "digits", "--target", "sagemaker"])

    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'sagemaker'" in err
    assert "'local', 'vertex', 'kfp'" in err


# --- compile only --------------------------------------------------------------------------


def test_compile_only_writes_the_pipeline(tmp_path, capsys):
    output = tmp_path / "compiled" / "digits.yaml"

    code = main(["--experiment", "digits", "--compile-only", str(output), "--runs-dir", "my-runs"])

    assert code == 0
    spec = yaml.safe_load(output.read_text())
    assert spec["pipelineInfo"]["name"] == "imgclf-digits"
    registry = spec["root"]["inputDefinitions"]["parameters"]["registry_root"]["defaultValue"]
    assert registry == str((tmp_path / "my-runs" / "registry").resolve())
    assert capsys.readouterr().out.strip() == f"compiled digits for local: {output}"


def test_compile_only_json_names_the_compiled_file(capsys):
    code = main(
        [
            "--experiment",
            "pets",
            "--target",
            "kfp",
            "--set",
            "gate.min=0.5",
            "--compile-only",
            "pets.yaml",
            "--json",
        ]
    )

    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result == {"experiment": "pets", "target": "kfp", "compiled": "pets.yaml"}
    spec = next(yaml.safe_load_all(Path(result["compiled"]).read_text()))
    assert spec["root"]["inputDefinitions"]["parameters"]["gate_min"]["defaultValue"] == 0.5


def test_compile_only_for_vertex_needs_no_gcp_settings(aiplatform, capsys):
    assert main(["--experiment", "pets", "--target", "vertex", "--compile-only", "pets.yaml"]) == 0

    assert Path("pets.yaml").is_file()
    assert aiplatform.calls == []


# --- preflight of the remote targets -------------------------------------------------------


def test_vertex_without_gcp_settings_exits_2_and_submits_nothing(aiplatform, monkeypatch, capsys):
    from pipelines.targets.vertex import VertexTarget

    def no_compile(self: Any, path: Any) -> Path:
        raise AssertionError("compiled before the preflight check")

    monkeypatch.setattr(VertexTarget, "compile", no_compile)

    assert main(["--experiment", "pets", "--target", "vertex"]) == 2

    err = capsys.readouterr().err
    assert "--target vertex needs gcp.project, gcp.bucket, gcp.service_account" in err
    assert "--set gcp.project=" in err
    assert "Traceback" not in err
    assert aiplatform.calls == []


def test_vertex_preflight_names_only_the_missing_fields(aiplatform, capsys):
    code = main(["--experiment", "pets", "--target", "vertex", "--set", "gcp.project=my-project"])

    assert code == 2
    err = capsys.readouterr().err
    assert "needs gcp.bucket, gcp.service_account;" in err
    assert "needs gcp.project" not in err
    assert aiplatform.calls == []


def test_vertex_with_gcp_settings_submits_through_aiplatform(aiplatform, capsys):
    """The control for the preflight tests: with every field set, the fake does get the job."""
    code = main(
        [
            "--experiment",
            "pets",
            "--target",
            "vertex",
            "--set",
            "gcp.project=my-project",
            "--set",
            "gcp.bucket=gs://my-bucket",
            "--set",
            "gcp.service_account=runner@my-project.iam.gserviceaccount.com",
            # Vertex pulls images by registry path; the local defaults fail the preflight.
            # Pinned by digest: a tag would be looked up in its registry (test_digests.py).
            "--set",
            "images.cpu=us-central1-docker.pkg.dev/my-project/imgclf/cpu@sha256:" + "a" * 64,
            "--set",
            "images.transformers=us-central1-docker.pkg.dev/my-project/imgclf/transformers"
            "@sha256:" + "b" * 64,
            "--no-cache",
            "--fresh",
            "--json",
        ]
    )

    assert code == 0
    calls = dict(aiplatform.calls)
    assert [name for name, _ in aiplatform.calls] == ["init", "PipelineJob", "submit"]
    assert calls["init"]["project"] == "my-project"
    assert calls["PipelineJob"]["pipeline_root"] == "gs://my-bucket/pipeline-root/pets"
    assert calls["PipelineJob"]["enable_caching"] is False
    assert calls["submit"]["service_account"] == "runner@my-project.iam.gserviceaccount.com"
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "SUBMITTED"
    assert result["run"].endswith("/pipelineJobs/run-1")


def test_kfp_without_host_exits_2(monkeypatch, capsys):
    import kfp

    def no_client(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("kfp.Client created without --host")

    monkeypatch.setattr(kfp, "Client", no_client)

    assert main(["--experiment", "digits", "--target", "kfp"]) == 2

    err = capsys.readouterr().err
    assert "--target kfp needs --host" in err
    assert "Traceback" not in err


def test_kfp_with_host_submits_to_that_host(monkeypatch, capsys):
    import kfp

    from pipelines.targets.kfp import api

    submitted: dict[str, Any] = {}

    class FakeClient:
        def __init__(self, host: str) -> None:
            submitted["host"] = host

        def get_pipeline_id(self, name: str) -> None:
            return None

        def upload_pipeline(self, package: str, pipeline_name: str, description: Any) -> Any:
            submitted["spec"] = next(yaml.safe_load_all(Path(package).read_text()))
            submitted["pipeline_name"] = pipeline_name
            return types.SimpleNamespace(pipeline_id="p")

        def list_pipeline_versions(self, pipeline_id: str, page_size: int) -> Any:
            version = types.SimpleNamespace(pipeline_version_id="v")
            return types.SimpleNamespace(pipeline_versions=[version])

        def create_experiment(self, name: str, description: Any) -> Any:
            submitted["experiment_name"] = name
            return types.SimpleNamespace(experiment_id="e")

        def run_pipeline(self, **kwargs: Any) -> Any:
            submitted.update(kwargs)
            return types.SimpleNamespace(run_id="abc")

    # The health check is the target's own request (test_kfp_submit.py covers it with a stub server).
    monkeypatch.setattr(api, "check_api", lambda host, timeout: {})
    monkeypatch.setattr(kfp, "Client", FakeClient)

    code = main(["--experiment", "digits", "--target", "kfp", "--host", "http://localhost:8080/"])

    assert code == 0
    assert submitted["host"] == "http://localhost:8080"
    assert submitted["spec"]["pipelineInfo"]["name"] == "imgclf-digits"
    assert submitted["pipeline_name"] == submitted["experiment_name"] == "imgclf-digits"
    assert (submitted["pipeline_id"], submitted["version_id"]) == ("p", "v")
    assert submitted["experiment_id"] == "e"
    assert submitted["pipeline_root"] == "minio://mlpipeline/v2/artifacts"
    assert submitted["params"]["model_name"] == "digits-classifier"
    out = capsys.readouterr().out
    assert "experiment digits on kfp: SUBMITTED" in out
    assert "http://localhost:8080/#/runs/details/abc" in out


# --- the script entry point ----------------------------------------------------------------


def test_submit_script_runs_as_a_file():
    completed = subprocess.run(
        [sys.executable, "pipelines/submit.py", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("usage: submit.py")
    assert "--experiment" in completed.stdout
    assert "Traceback" not in completed.stderr


def test_a_gate_metric_the_evaluation_cannot_compute_exits_2_before_running(capsys):
    code = main(["--experiment", "digits", "--set", "gate.metric=top5_accuracy"])
    err = capsys.readouterr().err
    assert code == 2
    assert "gate.metric: top5_accuracy needs at least 11 classes and this task has 10" in err
    assert "Traceback" not in err
    assert not Path("runs").exists()  # nothing ran


def test_a_source_that_cannot_be_snapshotted_exits_2(capsys):
    # gs:// is past the data preflight (it needs the network); listing it here is refused
    code = main(["--experiment", "digits", "--set", "data.source=folder:gs://no-access/pets"])
    err = capsys.readouterr().err
    assert code == 2
    assert "error: cannot list gs://no-access/pets/" in err and "Traceback" not in err
    assert not Path("runs").exists()


def test_fresh_reaches_the_train_step(tmp_path):
    compiled = tmp_path / "digits.yaml"
    assert main(["--experiment", "digits", "--fresh", "--compile-only", str(compiled)]) == 0
    spec = yaml.safe_load(compiled.read_text())
    loop = next(t for n, t in spec["root"]["dag"]["tasks"].items() if n.startswith("for-loop"))
    inner = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    train = next(t for n, t in inner.items() if n.startswith("train"))
    assert train["inputs"]["parameters"]["fresh"]["runtimeValue"]["constant"] is True


def test_a_local_folder_is_listed_once_before_the_run(tmp_path, monkeypatch, capsys):
    from PIL import Image

    import pipelines.targets as targets

    for name in ("cat", "dog"):
        (tmp_path / "images" / name).mkdir(parents=True)
        for index in range(3):
            Image.new("RGB", (8, 8), (index, 0, 0)).save(
                tmp_path / "images" / name / f"{index}.png"
            )
    scanned: list[str] = []
    real_scandir = os.scandir

    def counting_scandir(path: Any = ".") -> Any:
        scanned.append(os.fspath(path))
        return real_scandir(path)

    from pipelines.targets.local import LocalTarget

    class Ran(LocalTarget):
        def registry_root(self) -> str:
            return str(tmp_path / "registry")

        def run(self) -> dict[str, Any]:
            assert self.options.data_snapshot  # taken before the run
            return {"status": "SUCCEEDED"}

    monkeypatch.setattr(os, "scandir", counting_scandir)
    monkeypatch.setattr(
        targets, "get_target", lambda name, experiment, options: Ran(experiment, options)
    )
    source = f"data.source=folder:{tmp_path / 'images'}"

    assert main(["--experiment", "digits", "--set", source, "--json"]) == 0

    # The data preflight, the class count (gate.metric) and the snapshot share one listing.
    assert scanned.count(str(tmp_path / "images" / "cat")) == 1
    assert scanned.count(str(tmp_path / "images")) == 1
    assert "data snapshot" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("typed", "meant"), [("mnsit", "mnist"), ("pet", "pets"), ("cifar-10", "cifar10")]
)
def test_a_mistyped_experiment_name_exits_2_with_did_you_mean(typed, meant, capsys):
    assert main(["--experiment", typed]) == 2

    err = capsys.readouterr().err
    assert f"did you mean '{meant}'?" in err and "Traceback" not in err
