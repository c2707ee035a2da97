"""Errors known before anything runs: the registry's refusal of a class change (local folder
registry; the bucket's on Vertex) and GPU training pods no node of a kfp cluster can take."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from pipelines.cli import EXIT_USAGE, main
from pipelines.config import load_experiment
from pipelines.targets import get_target
from pipelines.targets.base import RunOptions


def registered(root: Path, name: str, version: str, class_names: list[str]) -> Path:
    """A version folder of the folder registry, as register_local leaves it."""
    folder = root / name / version
    folder.mkdir(parents=True)
    (folder / "registration.json").write_text(json.dumps({"name": name, "version": version}))
    (folder / "model_card.json").write_text(json.dumps({"class_names": class_names}))
    return folder


def test_a_class_change_the_local_registry_refuses_exits_2_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    registered(runs / "registry", "digits-classifier", "v1", ["0", "1", "2"])
    code = main(["--experiment", "digits", "--runs-dir", str(runs)])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "model 'digits-classifier' v1 predicts 3 classes and this model 10" in err
    assert "register.name" in err and "register.allow_class_change: true" in err
    assert "data snapshot" not in err  # refused before the snapshot, the compile and the run
    assert not (runs / "digits").exists()


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        ([], True),
        (["register.allow_class_change=true"], False),
        (["register.name=digits-subset"], False),
        (['data.classes=["0","1","2"]'], False),  # the same classes as the registered version
    ],
)
def test_the_registry_check_follows_the_fixes_it_names(
    tmp_path: Path, overrides: list[str], refused: bool
) -> None:
    runs = tmp_path / "runs"
    registered(runs / "registry", "digits-classifier", "v1", ["0", "1", "2"])
    experiment = load_experiment("digits", overrides)
    target = get_target("local", experiment, RunOptions(runs_dir=runs))
    assert bool(target.registry_preflight(())) == refused


class FakeStorage:
    """google.cloud.storage's Client, over a dict of blob name -> bytes in one bucket."""

    def __init__(self, blobs: dict[str, bytes], fail: Exception | None = None) -> None:
        self.blobs, self.fail = blobs, fail
        self.listed: list[tuple[str, str]] = []

    def __call__(self, project: str | None = None) -> FakeStorage:
        if self.fail is not None:
            raise self.fail
        return self

    def list_blobs(self, bucket: str, prefix: str, timeout: float) -> list[Any]:
        self.listed.append((bucket, prefix))
        return [type("Blob", (), {"name": n})() for n in self.blobs if n.startswith(prefix)]

    def bucket(self, name: str) -> Any:
        blobs = self.blobs

        class Bucket:
            def blob(self, path: str) -> Any:
                return type("Blob", (), {"download_as_bytes": lambda _, timeout: blobs[path]})()

        return Bucket()


VERTEX_READY = [
    "gcp.project=my-project",
    "gcp.bucket=gs://my-bucket",
    "gcp.service_account=runner@my-project.iam.gserviceaccount.com",
    *(
        f"images.{name}=us-central1-docker.pkg.dev/my-project/imgclf/{name}:0123abc"
        for name in ("cpu", "gpu", "tpu", "transformers")
    ),
]


def vertex_experiment(*overrides: str) -> Any:
    """digits for --target vertex: ready to submit (its offline preflight passes) unless
    `overrides` say otherwise."""
    experiment = load_experiment("digits", [*VERTEX_READY, *overrides])
    return experiment, get_target("vertex", experiment, RunOptions())


def test_on_vertex_the_registry_in_the_bucket_is_read_before_submitting(monkeypatch) -> None:
    from google.cloud import storage

    card = json.dumps({"class_names": ["cat", "dog"]}).encode()
    fake = FakeStorage(
        {
            "registry/digits-classifier/v1/registration.json": b"{}",
            "registry/digits-classifier/v1/model_card.json": json.dumps(
                {"class_names": [str(d) for d in range(10)]}
            ).encode(),
            "registry/digits-classifier/v2/registration.json": b"{}",
            "registry/digits-classifier/v2/model_card.json": card,
            "registry/digits-classifier/v3/model_card.json": b"{}",  # incomplete: no record
        }
    )
    monkeypatch.setattr(storage, "Client", fake)
    experiment, target = vertex_experiment()
    (problem,) = target.registry_preflight(())
    assert fake.listed == [("my-bucket", "registry/digits-classifier/")]
    assert "model 'digits-classifier' v2 predicts 2 classes and this model 10" in problem

    # A run the target's own (offline) preflight refuses reads no bucket: that refusal comes first.
    fake.listed.clear()
    experiment, target = vertex_experiment("images.cpu=image-classification-cpu:latest")
    assert target.registry_preflight(()) == []
    assert fake.listed == []


def test_a_bucket_registry_that_cannot_be_read_is_left_to_the_register_step(
    monkeypatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from google.cloud import storage

    monkeypatch.setattr(storage, "Client", FakeStorage({}, fail=OSError("no credentials")))
    experiment, target = vertex_experiment()
    assert target.registry_preflight(()) == []
    err = capsys.readouterr().err
    assert "could not read the registry gs://my-bucket/registry/digits-classifier/" in err


def test_the_kfp_registry_is_left_to_the_register_step_and_the_console_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    experiment = load_experiment("digits")
    target = get_target("kfp", experiment, RunOptions(runs_dir=tmp_path / "runs"))
    assert target.registry_preflight(()) == []
    err = capsys.readouterr().err
    assert err.startswith("note: the registry on the cluster (PVC imgclf-registry) cannot be read")
    assert "checked by the register step, which fails the run and says so" in err
    allowed = load_experiment("digits", ["register.allow_class_change=true"])
    target = get_target("kfp", allowed, RunOptions(runs_dir=tmp_path / "runs"))
    assert target.registry_preflight(()) == []
    assert capsys.readouterr().err == ""  # nothing to check, nothing to say


# --- GPU pods a kfp cluster cannot place ---------------------------------------------------


def fake_kubectl(folder: Path, nodes: list[dict[str, Any]]) -> Path:
    """A `kubectl` on PATH that answers `get nodes -o json` and notes each call."""
    folder.mkdir(parents=True, exist_ok=True)
    calls = folder / "calls"
    script = folder / "kubectl"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"open({str(calls)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        f"print(json.dumps({{'items': {nodes!r}}}))\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return calls


def kind_node(gpus: int | None = None) -> dict[str, Any]:
    allocatable = {"cpu": "16", "memory": "64Gi"}
    if gpus is not None:
        allocatable["nvidia.com/gpu"] = str(gpus)
    return {"metadata": {"name": "imgclf-control-plane"}, "status": {"allocatable": allocatable}}


def compile_pets(tmp_path: Path, capsys: pytest.CaptureFixture[str], *overrides: str) -> str:
    argv = ["--experiment", "pets", "--target", "kfp", "--compile-only", str(tmp_path / "p.yaml")]
    for override in overrides:
        argv += ["--set", override]
    assert main(argv) == 0
    return capsys.readouterr().err


def test_gpu_training_on_a_cluster_without_gpu_nodes_warns_at_compile_time(
    tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = fake_kubectl(tmp_path / "bin", [kind_node()])
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    err = compile_pets(tmp_path, capsys)
    assert (
        "warning: resources.kfp.gpus is 1 but no node of the cluster of kube context kind-imgclf"
        in err
    )
    assert "would stay Pending" in err and "--set resources.kfp.gpus=0" in err
    assert calls.read_text().startswith("--context kind-imgclf get nodes -o json")
    # the fix it names silences it, and asks the cluster nothing
    calls.unlink()
    assert "warning" not in compile_pets(tmp_path, capsys, "resources.kfp.gpus=0")
    assert not calls.exists()


def test_no_warning_when_a_node_offers_gpus_or_the_cluster_cannot_be_asked(
    tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_kubectl(tmp_path / "gpu", [kind_node(), kind_node(gpus=2)])
    monkeypatch.setenv("PATH", f"{tmp_path / 'gpu'}{os.pathsep}{os.environ['PATH']}")
    assert "warning" not in compile_pets(tmp_path, capsys)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no kubectl at all
    assert "warning" not in compile_pets(tmp_path, capsys)
    # ... unless the experiment says the cluster has none
    err = compile_pets(tmp_path, capsys, "kfp.gpu_nodes=false")
    assert "kfp.gpu_nodes is false" in err and "--set resources.kfp.gpus=0" in err


def test_the_named_fix_works_on_an_experiment_without_a_register_section(tmp_path: Path) -> None:
    path = tmp_path / "no-register.yaml"
    path.write_text(
        "data: {source: 'sklearn:digits', image_size: [8, 8], channels: 1}\n"
        "models: [{name: small-cnn, architecture: small_cnn}]\n"
    )
    registration = load_experiment(str(path), ["register.allow_class_change=true"]).registration
    assert registration.name == "no-register-classifier" and registration.allow_class_change
