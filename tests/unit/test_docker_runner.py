"""`--runner docker` without a daemon or an image: what the user sees before any step runs; and
the task images and registry the local target gives the DockerRunner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipelines.cli import main
from pipelines.config import load_experiment
from pipelines.targets.base import PreflightError, RunOptions
from pipelines.targets.local import LocalTarget
from pipelines.targets.local.capture import _lines
from pipelines.targets.local.target import CONTAINER_USER

docker = pytest.importorskip("docker")


class FakeImages:
    def __init__(self, present: set[str]) -> None:
        self.present = present

    def get(self, name: str) -> str:
        if name not in self.present:
            raise docker.errors.ImageNotFound(name)
        return name


class FakeClient:
    def __init__(self, present: set[str]) -> None:
        self.images = FakeImages(present)

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        pass


def target(tmp_path: Path, *overrides: str) -> LocalTarget:
    experiment = load_experiment("digits", list(overrides))
    return LocalTarget(experiment, RunOptions(runs_dir=tmp_path, runner="docker"))


def test_the_runner_is_for_the_local_target_only(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--experiment", "digits", "--target", "kfp", "--runner", "docker", "--images"])

    assert code == 2
    assert "--runner docker is for --target local only" in capsys.readouterr().err


def test_a_missing_image_stops_the_run_naming_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(docker, "from_env", lambda: FakeClient({"image-classification-cpu:latest"}))
    present = target(tmp_path)
    missing = target(tmp_path, "images.cpu=my-cpu:dev")

    present.check_images()  # the control: the default image is there
    with pytest.raises(PreflightError, match=r"images.cpu='my-cpu:dev' is not in the local Docker"):
        missing.check_images()


def test_a_daemon_that_does_not_answer_is_a_preflight_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down() -> Any:
        raise docker.errors.DockerException("connection refused")

    monkeypatch.setattr(docker, "from_env", down)

    with pytest.raises(PreflightError, match="the Docker daemon does not answer"):
        target(tmp_path).check_images()


def test_the_registry_and_checkpoints_lie_in_the_mounted_pipeline_root(tmp_path: Path) -> None:
    in_docker = target(tmp_path)
    in_process = LocalTarget(load_experiment("digits"), RunOptions(runs_dir=tmp_path))
    root = in_docker.pipeline_root()

    assert Path(in_docker.registry_root()).is_relative_to(root)
    assert Path(in_docker.checkpoint_root()).is_relative_to(root)
    assert not Path(in_process.registry_root()).is_relative_to(root)  # runs/registry as before
    assert CONTAINER_USER == "1000:1000"


def test_transformers_training_runs_in_its_image(tmp_path: Path) -> None:
    hf = target(tmp_path, "images.transformers=hf:dev")

    assert hf.train_image("transformers") == "hf:dev"
    assert hf.train_image("keras") == hf.experiment.images.cpu


def test_container_log_chunks_become_whole_lines() -> None:
    chunks = [b"epoch 1", b"/2 done\nepoch 2", b"/2 done\n", b"tail"]

    assert list(_lines(chunks)) == ["epoch 1/2 done\n", "epoch 2/2 done\n", "tail"]


def test_the_files_an_experiment_names_elsewhere_are_mounted_read_only(tmp_path):
    """A csv: source, the folders its rows point into, a weights file; one mount per tree, none
    for what lies in the pipeline root (mounted read-write already) or does not exist."""
    data = tmp_path / "data"
    (data / "one").mkdir(parents=True)
    (data / "one" / "a.png").write_bytes(b"x")
    other = tmp_path / "other" / "two"
    other.mkdir(parents=True)
    (other / "b.png").write_bytes(b"x")
    manifest = data / "manifest.csv"
    manifest.write_text(f"path,label\none/a.png,one\n{other / 'b.png'},two\n")
    weights = tmp_path / "weights" / "start.weights.h5"
    weights.parent.mkdir()
    weights.write_bytes(b"x")
    runs = tmp_path / "runs"

    local = target(
        runs,
        f"data.source=csv:{manifest}",
        "models.0.architecture=resnet50v2",
        "data.image_size=[32,32]",
        f"models.0.weights={weights}",
    )
    mounts = local.host_inputs()

    assert mounts == sorted([str(manifest), str(data / "one"), str(other), str(weights)])
    inside = target(runs, f"data.source=folder:{runs / 'digits' / 'images'}")
    (runs / "digits" / "images").mkdir(parents=True)
    assert inside.host_inputs() == []
