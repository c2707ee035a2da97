"""Which files of a package index pip in the base image installs: the files PyPI or a find-links
page lists for a pin, their wheel tags and Requires-Python against the image's."""

from __future__ import annotations

import hashlib
import json
import re
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import parse_wheel_filename

from containers.image_locks.inputs import PYTHON_FULL_VERSION, PYTHON_VERSION
from containers.image_locks.lockfile import read_lock

PYPI_SIMPLE = "https://pypi.org/simple/"
# The wheel platforms the base image's pip accepts: glibc 2.36 (bookworm) takes every
# manylinux_2_N up to 36 and the legacy manylinux names.
WHEEL_PLATFORMS = tuple(f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)) + (
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
    "linux_x86_64",
)


@dataclass(frozen=True)
class IndexFile:
    filename: str
    sha256: str
    requires_python: str | None


def image_tags() -> frozenset[Tag]:
    """The wheel tags pip in the base image accepts: CPython 3.11 on x86_64 manylinux."""
    version = tuple(int(part) for part in PYTHON_VERSION.split("."))
    found = set(
        cpython_tags(version, abis=[f"cp{version[0]}{version[1]}"], platforms=WHEEL_PLATFORMS)
    )
    found.update(compatible_tags(version, f"cp{version[0]}{version[1]}", platforms=WHEEL_PLATFORMS))
    return frozenset(found)


def installs(file: IndexFile, tags: frozenset[Tag]) -> bool:
    """Whether pip in the base image would take `file`: its Requires-Python admits the image's
    Python and, for a wheel, one of its tags is the image's."""
    if file.requires_python:
        try:
            if not SpecifierSet(file.requires_python).contains(PYTHON_FULL_VERSION):
                return False
        except InvalidSpecifier:
            return False
    if not file.filename.endswith(".whl"):
        return True  # an sdist builds anywhere its Requires-Python allows
    return bool(parse_wheel_filename(file.filename)[3] & tags)


def _get(url: str, accept: str) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=60) as response:
        return bytes(response.read())


def pypi_files(name: str) -> list[IndexFile]:
    """The files PyPI's simple API (JSON, PEP 691) lists for project `name`."""
    data = json.loads(_get(f"{PYPI_SIMPLE}{name}/", "application/vnd.pypi.simple.v1+json"))
    return [
        IndexFile(f["filename"], f["hashes"].get("sha256", ""), f.get("requires-python"))
        for f in data["files"]
    ]


class _Links(HTMLParser):
    """The wheel links of a PEP 503 page: file name, sha256 fragment, data-requires-python."""

    def __init__(self) -> None:
        super().__init__()
        self.files: list[IndexFile] = []
        self._href: tuple[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            values = dict(attrs)
            self._href = (values.get("href") or "", values.get("data-requires-python"))

    def handle_data(self, data: str) -> None:
        if self._href and data.strip():
            href, requires = self._href
            digest = re.search(r"sha256=([0-9a-f]{64})", href)
            self.files.append(IndexFile(data.strip(), digest[1] if digest else "", requires))
            self._href = None


def wheel_page_files(source: str) -> list[IndexFile]:
    """The files of a find-links source: a local folder (hashed here) or a PEP 503 page."""
    folder = Path(source)
    if folder.is_dir():
        return [
            IndexFile(path.name, hashlib.sha256(path.read_bytes()).hexdigest(), None)
            for path in sorted(folder.iterdir())
            if path.suffix == ".whl"
        ]
    links = _Links()
    links.feed(_get(source, "text/html").decode())
    return links.files


def uninstallable(text: str, extra_files: tuple[IndexFile, ...] = ()) -> dict[str, str]:
    """name -> version for every pin of the lock `text` none of whose hashed files pip in the
    image would install (wrong Requires-Python or platform). Reads PyPI's simple API."""
    tags = image_tags()
    lock = read_lock(text)
    found = {}
    for name, version in sorted(lock.pins.items()):
        hashes = lock.hashes.get(name, frozenset())
        files = [f for f in pypi_files(name) + list(extra_files) if f.sha256 in hashes]
        if not any(installs(file, tags) for file in files):
            found[name] = version
    return found
