"""Each lock installs as the image installs it: the images' own installer (uv, at the version
containers/locks/installer.txt pins) resolves it *with* dependencies and `--require-hashes` for the
base image's Python (CPython 3.11) and platform (x86_64 manylinux), without installing anything,
and must take exactly the locked versions. A requirement of any pinned distribution that the lock
does not pin fails here, as it would fail the image build. Needs the package index (PyPI; the cpu
image's torch also PyTorch's wheel page or a find-links folder of the machine's pip setup)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from containers.image_locks import inputs, lockfile, wheels

REPO = Path(__file__).resolve().parents[2]
PLUS = re.compile(r"^ \+ (?P<name>[A-Za-z0-9._-]+)==(?P<version>\S+)$", re.MULTILINE)


def configured_find_links() -> list[str]:
    """The find-links of this machine's pip setup (files and PIP_FIND_LINKS): uv reads no pip
    configuration, so the test hands them over as containers/build.sh does."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    found: list[str] = []
    for match in re.finditer(r"^\S*find-links='([^']*)'", listed, re.MULTILINE):
        found += [link for link in match[1].split() if link not in found]
    return found


def resolve(lock: Path, find_links: list[str]) -> subprocess.CompletedProcess[str]:
    """`uv pip install --dry-run --require-hashes` of `lock` with dependencies, for the images'
    Python and platform; sdists (kfp-server-api) build with this environment's setuptools, as the
    image builds them with the lock's (no build environment from the index)."""
    command = [sys.executable, "-m", "uv", "pip", "install", "--dry-run", "--reinstall"]
    command += ["--require-hashes", "--no-build-isolation", "--python", sys.executable]
    command += ["--python-version", inputs.PYTHON_VERSION]
    command += ["--python-platform", inputs.PLATFORM, "--index-strategy", "unsafe-best-match"]
    for link in find_links:
        command += ["--find-links", link]
    command += ["-r", str(lock)]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)


def find_links_for(lock_name: str) -> list[str]:
    # as containers/install-locked.sh: find-links only for a lock that pins a local version
    if lock_name in inputs.CPU_TORCH_IMAGES:
        return configured_find_links() or [inputs.TORCH_WHEELS]
    return []


def test_the_tests_resolve_with_the_installer_the_images_use():
    pins = lockfile.read_lock(inputs.lock_path(inputs.INSTALLER, REPO).read_text())
    version = subprocess.run(
        [sys.executable, "-m", "uv", "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[1]

    assert pins.pins == {"uv": version}, "pip install -e '.[dev]' brings the installer's uv"


@pytest.mark.parametrize("lock_name", inputs.LOCKS)
def test_the_lock_resolves_with_its_dependencies_and_hashes(lock_name):
    lock = inputs.lock_path(lock_name, REPO)

    done = resolve(lock, find_links_for(lock_name))

    assert done.returncode == 0, done.stderr[-3000:]
    chosen = {canonicalize_name(m["name"]): m["version"] for m in PLUS.finditer(done.stderr)}
    pins = lockfile.read_lock(lock.read_text()).pins
    assert chosen == pins  # exactly the locked versions: nothing more, nothing less


def without(text: str, name: str) -> str:
    """The lock `text` without the pin of `name` (its whole block)."""
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text)
    return "\n".join(b for b in blocks if not b.lower().startswith(f"{name}==")) + "\n"


def test_a_lock_missing_one_dependency_fails_naming_it(tmp_path):
    """The control case: the shared lock with idna (a dependency of requests) taken out."""
    text = inputs.lock_path(inputs.COMMON, REPO).read_text()
    assert re.search(r"^idna==", text, re.MULTILINE)
    lock = tmp_path / "common.txt"
    lock.write_text(without(text, "idna"))

    done = resolve(lock, [])

    assert done.returncode != 0
    assert "`idna`" in done.stderr


def test_make_lock_refuses_a_release_for_another_python():
    """uv honours only the lower bound of a Requires-Python, and would install the
    backports-strenum release the cpu lock once pinned (Requires-Python < 3.11): `make lock`
    checks every pinned file against the images' Python and resolves again without it."""
    wheel = "backports_strenum-1.3.1-py3-none-any.whl"
    older = wheels.IndexFile(wheel, "0" * 64, ">=3.8.6,<3.11")
    fitting = wheels.IndexFile(wheel, "0" * 64, ">=3.8.6")

    assert not wheels.installs(older, wheels.image_tags())
    assert wheels.installs(fitting, wheels.image_tags())
