"""What each image lock is resolved from: the base image's Python and platform, the extras of
pyproject.toml per lock, the digest of those inputs and the header that records it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
LOCK_DIR = Path("containers") / "locks"
# The base image of every Dockerfile (PYTHON_IMAGE): CPython 3.11 on Debian bookworm, whose glibc
# (2.36) takes manylinux_2_36 wheels. The images are built for x86_64 only.
PYTHON_VERSION = "3.11"
PYTHON_FULL_VERSION = "3.11.11"
PLATFORM = "x86_64-manylinux_2_36"
# The installer's lock and the layer every image shares (containers/Dockerfile).
INSTALLER = "installer"
COMMON = "common"
COMMON_EXTRAS: tuple[str, ...] = ("vertex", "tracking")
COMMON_LOCK_LABEL = f"containers/locks/{COMMON}.txt"
# What each image installs: extras of pyproject.toml. The steps' needs per image are in
# pipelines/targets/vertex/images.py (IMAGE_STEPS, STEP_EXTRAS); tests/unit/test_containers.py
# holds the two together.
IMAGE_EXTRAS: dict[str, tuple[str, ...]] = {
    "cpu": ("tf", "data", "hf", "export", "vertex", "serve", "tracking"),
    "gpu": ("tf-gpu", "vertex", "tracking"),
    "tpu": ("tf-tpu", "vertex", "tracking"),
    "transformers": ("tf", "hf", "vertex", "tracking"),
}
# The cpu image evaluates transformers models without CUDA: torch's CPU build (the hf extra's
# version with the +cpu label), from PyTorch's page of torch wheels. The lock pins its hash but
# not where it lies: the build's pip setting (find-links; containers/install-locked.sh defaults to the
# page) says that, so a local wheel folder serves an offline build just as well.
CPU_TORCH_IMAGES = frozenset({"cpu"})
TORCH_WHEELS = "https://download.pytorch.org/whl/torch/"
# The environment markers of the base image, to evaluate `; platform_machine == ...` and the like.
MARKERS = {
    "python_version": PYTHON_VERSION,
    "python_full_version": PYTHON_FULL_VERSION,
    "platform_machine": "x86_64",
    "platform_system": "Linux",
    "sys_platform": "linux",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}


class LockError(RuntimeError):
    """A lock could not be written or does not match pyproject.toml; the message says why."""


def load_pyproject(root: Path = REPO) -> dict[str, Any]:
    import tomllib  # Python 3.11+, as the images and `make lock` use

    return tomllib.loads((root / "pyproject.toml").read_text())


LOCKS: tuple[str, ...] = (INSTALLER, COMMON, *IMAGE_EXTRAS)


def lock_path(image: str, root: Path = REPO) -> Path:
    return root / LOCK_DIR / f"{image}.txt"


def extras_of(lock: str) -> tuple[str, ...]:
    """The extras of pyproject.toml a lock is resolved from."""
    if lock == INSTALLER:
        return ()
    return COMMON_EXTRAS if lock == COMMON else IMAGE_EXTRAS[lock]


def _exact_pin(pyproject: dict[str, Any], extra: str, name: str, example: str) -> str:
    """The version the `extra` of pyproject.toml pins `name` to with ==."""
    for text in pyproject["project"]["optional-dependencies"][extra]:
        requirement = Requirement(text)
        if canonicalize_name(requirement.name) == name:
            pins = [s.version for s in requirement.specifier if s.operator == "=="]
            if len(pins) == 1:
                return pins[0]
    raise LockError(f"the {extra} extra of pyproject.toml must pin {name} with ==, e.g. {example}")


def installer_pin(pyproject: dict[str, Any]) -> str:
    """`uv==X`: the installer the images use, the version the dev extra pins."""
    return f"uv=={_exact_pin(pyproject, 'dev', 'uv', 'uv==0.13.9')}"


def cpu_torch_pin(pyproject: dict[str, Any]) -> str:
    """`torch==X+cpu` for the torch version the hf extra pins."""
    return f"torch=={_exact_pin(pyproject, 'hf', 'torch', 'torch==2.13.0')}+cpu"


def lock_inputs(pyproject: dict[str, Any], image: str) -> dict[str, Any]:
    """Everything in pyproject.toml (and here) that determines the lock of `image`."""
    project = pyproject["project"]
    if image == INSTALLER:
        return {
            "python": PYTHON_FULL_VERSION,
            "platform": PLATFORM,
            "installer": installer_pin(pyproject),
        }
    extras = project.get("optional-dependencies", {})
    chosen: dict[str, list[str]] = {}
    pending = list(extras_of(image))
    while pending:  # an extra may name the project's own extras: image-classification-pipelines[x]
        extra = pending.pop()
        if extra in chosen:
            continue
        if extra not in extras:
            raise LockError(f"pyproject.toml declares no extra {extra!r} (the {image} lock)")
        chosen[extra] = list(extras[extra])
        for text in extras[extra]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == canonicalize_name(project["name"]):
                pending.extend(requirement.extras)
    additions = [cpu_torch_pin(pyproject)] if image in CPU_TORCH_IMAGES else []
    return {
        "python": PYTHON_FULL_VERSION,
        "platform": PLATFORM,
        "requires-python": project.get("requires-python", ""),
        "build-system": list(pyproject["build-system"]["requires"]),
        "dependencies": list(project.get("dependencies", [])),
        "extras": dict(sorted(chosen.items())),
        "additions": additions,
    }


def inputs_digest(pyproject: dict[str, Any], image: str) -> str:
    canonical = json.dumps(lock_inputs(pyproject, image), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def header(pyproject: dict[str, Any], image: str) -> str:
    if image == INSTALLER:
        what = [
            "# The images' installer (containers/Dockerfile): uv at the version pyproject.toml's dev",
            f"# extra pins, for CPython {PYTHON_FULL_VERSION} on {PLATFORM}.",
        ]
    elif image == COMMON:
        what = [
            "# The layer every step image shares (containers/Dockerfile): pyproject.toml's dependencies,",
            f"# extras {', '.join(COMMON_EXTRAS)} and build requirements, for CPython "
            f"{PYTHON_FULL_VERSION} on {PLATFORM}.",
        ]
    else:
        what = [
            f"# The whole environment of the {image} image (containers/Dockerfile, IMAGE={image}):",
            f"# pyproject.toml's dependencies, extras {', '.join(IMAGE_EXTRAS[image])} and build "
            f"requirements, for CPython {PYTHON_FULL_VERSION} on {PLATFORM},",
            f"# with the pins of {COMMON}.txt, the layer below it.",
        ]
    lines = [
        *what,
        "# Written by `make lock`; run it again after changing pyproject.toml (the tests say when).",
        f"# inputs-sha256: {inputs_digest(pyproject, image)}",
    ]
    if image in CPU_TORCH_IMAGES:
        lines.append(
            f"# torch's CPU build is on {TORCH_WHEELS}: give pip that page or a folder holding the"
        )
        lines.append("# wheel (PIP_FIND_LINKS); the hashes below decide which file is accepted.")
    return "\n".join(lines) + "\n"
