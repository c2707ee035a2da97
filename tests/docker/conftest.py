"""The docker tier (`make test-images`): step images built with containers/build.sh, run by the
local Docker daemon. Every test here is marked `docker`; without a daemon they skip."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PREFIX = "image-classification-"
# The user the images run their steps as (containers/Dockerfile), as a cluster runs them.
STEP_USER = "1000:1000"


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    docker = pytest.importorskip("docker", reason="the docker extra is not installed")
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker daemon answers ({exc}); .ci/run starts one")
    yield client
    client.close()


@pytest.fixture(scope="session")
def built_image(docker_client: Any) -> Callable[[str], str]:
    """`built_image("cpu")` builds that image once per session (containers/build.sh, the layer
    cache makes a rebuild of unchanged code take seconds) and returns its :latest tag."""
    built: dict[str, str] = {}

    def build(name: str) -> str:
        if name not in built:
            done = subprocess.run(
                ["bash", str(REPO / "containers" / "build.sh"), name],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=3600,
                check=False,
            )
            assert done.returncode == 0, (
                f"building {name}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
            )
            built[name] = f"{PREFIX}{name}:latest"
        return built[name]

    return build


@pytest.fixture(scope="session")
def in_image(docker_client: Any) -> Callable[..., tuple[int, str]]:
    """`in_image(image, command, mounts={host: inside}, network="none")`: run `command` in
    `image` as the step user, as a cluster would (exit code, output)."""

    def run(
        image: str,
        command: list[str],
        mounts: dict[str, str] | None = None,
        network: str = "none",
        timeout: float = 1800,
    ) -> tuple[int, str]:
        volumes = {host: {"bind": inside, "mode": "rw"} for host, inside in (mounts or {}).items()}
        container = docker_client.containers.run(
            image, command, user=STEP_USER, network_mode=network, volumes=volumes, detach=True
        )
        try:
            code = container.wait(timeout=timeout)["StatusCode"]
            return int(code), container.logs().decode("utf-8", errors="replace")
        finally:
            container.remove(force=True)

    return run


# TensorFlow in the tpu image: its TPU build finds PyPI's libtpu, which is JAX's build without
# TensorFlow's TPU ops, and aborts at import ("ConfigureDistributedTpuOp_DoWork not available in
# this library"). TensorFlow's own libtpu builds are on its libtpu-tf-releases page, which the tpu
# lock does not reach yet. Strict: a fixed image fails these marks, so they go with the fix.
TPU_TENSORFLOW_TESTS = {
    "test_every_step_module_and_lazy_library_imports_in_the_image",
    "test_the_keras_training_step_runs_in_the_accelerator_images_on_the_cpu",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        name = getattr(item, "originalname", item.name)
        if callspec and callspec.params.get("image") == "tpu" and name in TPU_TENSORFLOW_TESTS:
            item.add_marker(
                pytest.mark.xfail(
                    strict=True,
                    reason="tensorflow-tpu aborts at import with PyPI's libtpu (JAX's build)",
                )
            )
