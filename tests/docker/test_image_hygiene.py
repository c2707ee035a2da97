"""Nothing of the build machine is in an image: the index URLs, extra index URLs and find-links of
its pip setup (and the loopback URLs containers/build.sh serves them at), and the CA bundle of its
TLS proxy reach the build for one command at a time (containers/install-locked.sh), so neither
`docker history --no-trunc` nor any file of the image holds them."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from containers.image_locks import inputs

pytestmark = pytest.mark.docker

# Where a setting or a certificate could have been written in an image.
SEARCHED = ["/etc", "/opt", "/home", "/root", "/tmp", "/usr/local", "/var"]
PEM = re.compile(r"-----BEGIN CERTIFICATE-----\n(.+?)-----END CERTIFICATE-----", re.DOTALL)


def pip_settings() -> dict[str, list[str]]:
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    found: dict[str, list[str]] = {}
    for key, value in re.findall(r"^\S*?\.?([a-z-]+)='([^']*)'$", listed, re.MULTILINE):
        found.setdefault(key, []).extend(value.split())
    return found


def builder_strings() -> list[str]:
    """The build machine's package locations, as configured and as build.sh serves them."""
    settings = pip_settings()
    found = [
        location
        for key in ("index-url", "extra-index-url", "find-links")
        for location in settings.get(key, [])
    ]
    found.append("127.0.0.1:8876/")  # the served folders and setup, containers/build.sh
    return sorted(set(found))


def builder_only_certificates(base_bundle: str) -> list[str]:
    """A line of each certificate in the build machine's pip CA bundle that the base image's own
    bundle lacks (a TLS proxy's CA): what would betray the bundle copied into an image."""
    cert = pip_settings().get("cert", [])
    if not cert or not Path(cert[0]).is_file():
        return []
    theirs = {block.split()[5] for block in PEM.findall(base_bundle) if len(block.split()) > 5}
    ours = [block.split() for block in PEM.findall(Path(cert[0]).read_text())]
    return [lines[5] for lines in ours if len(lines) > 5 and lines[5] not in theirs]


@pytest.mark.parametrize("image", sorted(inputs.IMAGE_EXTRAS))
def test_no_index_find_links_or_ca_of_the_build_machine_is_in_the_image(
    image: str, built_image: Callable[[str], str], in_image: Callable[..., tuple[int, str]]
) -> None:
    tag = built_image(image)
    history = subprocess.run(
        ["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", tag],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    strings = builder_strings()
    base_bundle = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            tag,
            "cat",
            "/etc/ssl/certs/ca-certificates.crt",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    certificates = builder_only_certificates(base_bundle)

    assert "RUN" in history or "/bin/sh -c" in history  # the history was read
    for text in strings:
        assert text not in history, f"{image}: docker history holds {text!r}"
    patterns = [arg for text in strings + certificates for arg in ("-e", text)]
    # as root, so that no folder is unreadable to the search
    searched = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--user", "0", tag]
        + ["grep", "-rIlF", *patterns, *SEARCHED],
        capture_output=True,
        text=True,
        check=False,
    )
    assert searched.returncode == 1, (
        f"{image}: files holding the build machine's setup:\n{searched.stdout[-2000:]}"
        f"{searched.stderr[-2000:]}"
    )
    code, out = in_image(tag, ["sh", "-c", "ls -d /opt/pip-setup /opt/locks/*.crt 2>/dev/null"])
    assert out.strip() == "", out
