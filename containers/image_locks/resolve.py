"""A lock resolved by `uv pip compile`, and resolved again without the pinned versions none of
whose files installs in the base image."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

from containers.image_locks.inputs import (
    COMMON_LOCK_LABEL,
    CPU_TORCH_IMAGES,
    INSTALLER,
    PLATFORM,
    PYTHON_FULL_VERSION,
    PYTHON_VERSION,
    REPO,
    TORCH_WHEELS,
    LockError,
    extras_of,
    header,
    load_pyproject,
    lock_inputs,
)
from containers.image_locks.wheels import uninstallable, wheel_page_files

# Rounds of `make lock` excluding versions no file of which installs (uv honours only the lower
# bound of a Requires-Python, so it may pick a release for an older Python).
EXCLUDE_ROUNDS = 5


def compile_lock(
    image: str,
    root: Path = REPO,
    wheels: Path | None = None,
    excluded: tuple[str, ...] = (),
    pinned: tuple[str, ...] = (),
) -> str:
    """Resolve the lock of `image` with `uv pip compile` (PyPI, and PyTorch's wheel page or the
    folder `wheels` for the CPU torch), never picking the versions `excluded` (name!=version
    constraints) and keeping the versions `pinned` (name==version: the shared layer's); its text,
    header first."""
    pyproject = load_pyproject(root)
    inputs = lock_inputs(pyproject, image)
    if importlib.util.find_spec("uv") is None:
        raise LockError("uv is not installed; install the dev extra: pip install -e '.[dev]'")
    with tempfile.TemporaryDirectory() as scratch:
        constraints = Path(scratch) / "constraints.txt"
        constraints.write_text("".join(f"{line}\n" for line in (*excluded, *pinned)))
        if image == INSTALLER:
            command = [sys.executable, "-m", "uv", "pip", "compile", "-"]
            stdin = inputs["installer"] + "\n"
        else:
            command = [sys.executable, "-m", "uv", "pip", "compile", "pyproject.toml", "-"]
            stdin = "\n".join(inputs["build-system"] + inputs["additions"]) + "\n"
        for extra in extras_of(image):
            command += ["--extra", extra]
        command += ["--constraint", str(constraints), "--python-version", PYTHON_VERSION]
        command += ["--python-platform", PLATFORM, "--generate-hashes", "--no-header", "--quiet"]
        if image in CPU_TORCH_IMAGES:
            command += ["--find-links", str(wheels) if wheels else TORCH_WHEELS]
        done = subprocess.run(
            command, cwd=root, input=stdin, capture_output=True, text=True, check=False
        )
    if done.returncode != 0:
        raise LockError(f"uv pip compile failed for the {image} image:\n{done.stderr.strip()}")
    # uv names the constraints file where it lay; the lock names the file those pins come from,
    # so that compiling twice gives the same text.
    return header(pyproject, image) + done.stdout.replace(str(constraints), COMMON_LOCK_LABEL)


def installable_lock(
    image: str, root: Path = REPO, wheels: Path | None = None, pinned: tuple[str, ...] = ()
) -> str:
    """compile_lock, checked file by file against the image's Python and platform; a pinned
    version none of whose files installs there is excluded and the lock resolved again."""
    extra = (
        tuple(wheel_page_files(str(wheels) if wheels else TORCH_WHEELS))
        if image in CPU_TORCH_IMAGES
        else ()
    )
    excluded: list[str] = []
    for _ in range(EXCLUDE_ROUNDS):
        text = compile_lock(image, root, wheels, tuple(excluded), pinned)
        bad = uninstallable(text, extra)
        if not bad:
            return text
        for name, version in bad.items():
            print(
                f"{image}: no file of {name}=={version} installs on CPython {PYTHON_FULL_VERSION} "
                f"{PLATFORM} (Requires-Python or platform tags); resolving without it",
                file=sys.stderr,
            )
            excluded.append(f"{name}!={version}")
    raise LockError(
        f"the {image} lock still pins versions that do not install after excluding {excluded}"
    )
