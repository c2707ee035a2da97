"""Each image's lock installs: pip resolves it with `--require-hashes` for the base image's Python
(CPython 3.11) and platform (x86_64 manylinux), as the Dockerfile's `pip install` does, without
installing anything. Needs the package index (PyPI; the cpu image's torch also PyTorch's wheel
page or a find-links folder of the machine's pip setup that holds it)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from pipelines import image_locks

REPO = Path(__file__).resolve().parents[2]
IMAGES = sorted(image_locks.IMAGE_EXTRAS)


def configured_find_links() -> list[str]:
    """The find-links of this machine's pip setup (files and PIP_FIND_LINKS), which a
    --find-links on the command line would otherwise replace."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    found: list[str] = []
    for match in re.finditer(r"^\S*find-links='([^']*)'", listed, re.MULTILINE):
        found += [link for link in match[1].split() if link not in found]
    return found


@pytest.mark.parametrize("image", IMAGES)
def test_the_lock_resolves_with_hashes_for_the_images_python_and_platform(image, tmp_path):
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed"]
    # every distribution is in the lock: --no-deps lets pip take its sdists (kfp-server-api)
    # while it checks each pin against the given Python and platforms
    command += ["--no-deps", "--require-hashes", "--disable-pip-version-check", "--quiet"]
    command += ["--python-version", image_locks.PYTHON_VERSION, "--implementation", "cp"]
    command += ["--abi", "cp" + image_locks.PYTHON_VERSION.replace(".", "")]
    for platform in image_locks.WHEEL_PLATFORMS:
        command += ["--platform", platform]
    if image in image_locks.CPU_TORCH_IMAGES:
        # the machine's wheel folders where it has some (an offline torch), else PyTorch's page
        for link in configured_find_links() or [image_locks.TORCH_WHEELS]:
            command += ["--find-links", link]
    command += ["--report", str(report), "-r", str(image_locks.lock_path(image, REPO))]

    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)

    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
    assert done.returncode == 0, "\n".join(errors[-3:]) or done.stderr[-2000:]
    chosen = {
        canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    pins = image_locks.read_lock(image_locks.lock_path(image, REPO).read_text()).pins
    assert chosen == pins  # pip took exactly the locked versions, no more


def test_a_pin_for_another_python_is_refused(tmp_path):
    """The control case: the backports-strenum release the cpu lock once pinned requires
    Python < 3.11, and pip refuses it for the images' Python."""
    lock = tmp_path / "lock.txt"
    lock.write_text(
        "backports-strenum==1.3.1 \\\n"
        "    --hash=sha256:cdcfe36dc897e2615dc793b7d3097f54d359918fc448754a517e6f23044ccf83\n"
    )
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed"]
    command += ["--no-deps", "--require-hashes", "--quiet", "--python-version", "3.11"]
    command += ["--implementation", "cp", "--abi", "cp311", "--platform", "manylinux_2_36_x86_64"]
    command += ["-r", str(lock)]

    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)

    assert done.returncode != 0
    assert "No matching distribution found for backports-strenum==1.3.1" in done.stderr
