"""A lock file read (its inputs digest, pins and hashes) and checked against pyproject.toml."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from containers.image_locks.inputs import (
    COMMON,
    IMAGE_EXTRAS,
    INSTALLER,
    LOCK_DIR,
    MARKERS,
    inputs_digest,
    lock_inputs,
)

DIGEST_LINE = re.compile(r"^# inputs-sha256: (?P<digest>[0-9a-f]{64})$", re.MULTILINE)
PIN_LINE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)", re.MULTILINE)


@dataclass(frozen=True)
class Lock:
    digest: str | None
    pins: dict[str, str]  # canonical name -> version
    unhashed: tuple[str, ...]  # pins without a --hash line (pip --require-hashes refuses them)
    hashes: dict[str, frozenset[str]] = field(default_factory=dict)  # name -> sha256 of its files


def read_lock(text: str) -> Lock:
    digest = DIGEST_LINE.search(text)
    pins: dict[str, str] = {}
    unhashed = []
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text)
    hashes: dict[str, frozenset[str]] = {}
    for block in blocks:
        pin = PIN_LINE.match(block)
        if not pin:
            continue
        name = canonicalize_name(pin["name"])
        pins[name] = pin["version"]
        hashes[name] = frozenset(re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
        if not hashes[name]:
            unhashed.append(name)
    return Lock(digest["digest"] if digest else None, pins, tuple(unhashed), hashes)


def requirements_of(pyproject: dict[str, Any], image: str) -> list[Requirement]:
    """The direct requirements the lock must satisfy in the image's environment."""
    inputs = lock_inputs(pyproject, image)
    if image == INSTALLER:
        return [Requirement(inputs["installer"])]
    texts = inputs["build-system"] + inputs["dependencies"] + inputs["additions"]
    for requirements in inputs["extras"].values():
        texts += requirements
    own = canonicalize_name(pyproject["project"]["name"])
    found = []
    for text in texts:
        requirement = Requirement(text)
        if canonicalize_name(requirement.name) == own:
            continue
        if requirement.marker is None or requirement.marker.evaluate(dict(MARKERS, extra="")):
            found.append(requirement)
    return found


def problems(
    pyproject: dict[str, Any], image: str, text: str, common: str | None = None
) -> list[str]:
    """Why the lock `text` does not fit pyproject.toml for `image` (empty when it does); an image's
    lock must also keep every pin of `common` (the text of common.txt), hashes and all, or its
    layer would replace the shared one's files."""
    lock = read_lock(text)
    name = f"{LOCK_DIR / image}.txt"
    found = []
    if lock.digest != inputs_digest(pyproject, image):
        found.append(
            f"{name} was locked from other inputs than pyproject.toml has now "
            "(dependencies, extras, build requirements); run `make lock`"
        )
    for requirement in requirements_of(pyproject, image):
        version = lock.pins.get(canonicalize_name(requirement.name))
        if version is None:
            found.append(f"{name} lacks {requirement.name} ({requirement}); run `make lock`")
        elif not requirement.specifier.contains(version, prereleases=True):
            found.append(f"{name} pins {requirement.name}=={version}, outside {requirement}")
    found += [f"{name} pins {pin} without a --hash" for pin in lock.unhashed]
    if common is not None and image in IMAGE_EXTRAS:
        shared = read_lock(common)
        for dist, version in sorted(shared.pins.items()):
            if lock.pins.get(dist) != version or lock.hashes.get(dist) != shared.hashes.get(dist):
                found.append(
                    f"{name} pins {dist}=={lock.pins.get(dist)}, not {COMMON}.txt's "
                    f"{dist}=={version} (with its hashes); run `make lock`"
                )
    return found


def pins_of(text: str) -> list[str]:
    """`name==version` for every pin of a lock, to constrain another resolution."""
    return [f"{name}=={version}" for name, version in sorted(read_lock(text).pins.items())]
