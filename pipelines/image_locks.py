"""Locked, hash-checked dependencies of the step images: `make lock` writes them, tests check them.

`containers/Dockerfile` builds every image in three locked layers, each installed exactly
(`uv pip sync --require-hashes`: no resolution against the index at build time, every file checked
against its sha256, anything not listed removed) and then checked (`uv pip check`), so an
incomplete lock fails the build with the missing name:

- `installer.txt`: the installer itself, uv, at the version the dev extra pins (the one `make lock`
  and the lock tests run), bootstrapped by the base image's pip with `--no-deps --require-hashes`;
- `common.txt`: what every image has (the project's dependencies, the vertex extra, the build
  requirements), one layer shared by the four images;
- `<image>.txt`: the image's whole environment, resolved with `common.txt`'s pins as constraints, so
  its layer on top of the shared one adds the framework stack only.

Each lock is resolved by `uv pip compile` from pyproject.toml for the base image's Python and
platform. Its header records a digest of those inputs; `python -m pipelines.image_locks --check`
(and the tests) compare it with pyproject.toml as it is now, without the network, and say to run
`make lock` when they differ.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

REPO = Path(__file__).resolve().parents[1]
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
PYPI_SIMPLE = "https://pypi.org/simple/"
# The wheel platforms the base image's pip accepts: glibc 2.36 (bookworm) takes every
# manylinux_2_N up to 36 and the legacy manylinux names.
WHEEL_PLATFORMS = tuple(f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)) + (
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
    "linux_x86_64",
)
# Rounds of `make lock` excluding versions no file of which installs (uv honours only the lower
# bound of a Requires-Python, so it may pick a release for an older Python).
EXCLUDE_ROUNDS = 5
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
DIGEST_LINE = re.compile(r"^# inputs-sha256: (?P<digest>[0-9a-f]{64})$", re.MULTILINE)
PIN_LINE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)", re.MULTILINE)


class LockError(RuntimeError):
    """A lock could not be written or does not match pyproject.toml; the message says why."""


@dataclass(frozen=True)
class Lock:
    digest: str | None
    pins: dict[str, str]  # canonical name -> version
    unhashed: tuple[str, ...]  # pins without a --hash line (pip --require-hashes refuses them)
    hashes: dict[str, frozenset[str]] = field(default_factory=dict)  # name -> sha256 of its files


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


def installer_pin(pyproject: dict[str, Any]) -> str:
    """`uv==X`: the installer the images use, the version the dev extra pins."""
    for text in pyproject["project"]["optional-dependencies"]["dev"]:
        requirement = Requirement(text)
        if canonicalize_name(requirement.name) == "uv":
            pins = [s.version for s in requirement.specifier if s.operator == "=="]
            if len(pins) == 1:
                return f"uv=={pins[0]}"
    raise LockError("the dev extra of pyproject.toml must pin uv with ==, e.g. uv==0.13.9")


def cpu_torch_pin(pyproject: dict[str, Any]) -> str:
    """`torch==X+cpu` for the torch version the hf extra pins."""
    for text in pyproject["project"]["optional-dependencies"]["hf"]:
        requirement = Requirement(text)
        if canonicalize_name(requirement.name) == "torch":
            pins = [s.version for s in requirement.specifier if s.operator == "=="]
            if len(pins) == 1:
                return f"torch=={pins[0]}+cpu"
    raise LockError("the hf extra of pyproject.toml must pin torch with ==, e.g. torch==2.13.0")


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


def pins_of(text: str) -> list[str]:
    """`name==version` for every pin of a lock, to constrain another resolution."""
    return [f"{name}=={version}" for name, version in sorted(read_lock(text).pins.items())]


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.image_locks",
        description="Write (or --check) containers/locks/<lock>.txt from pyproject.toml: the "
        "installer's, the shared layer's (common) and each image's.",
    )
    parser.add_argument("images", nargs="*", metavar="LOCK", help=f"default: {' '.join(LOCKS)}")
    parser.add_argument(
        "--check", action="store_true", help="only compare the locks with pyproject.toml (offline)"
    )
    parser.add_argument(
        "--wheels",
        type=Path,
        metavar="DIR",
        help="a folder holding torch's CPU wheel, to lock without PyTorch's wheel page "
        "(the lock still tells pip to fetch it from there)",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.images) - set(LOCKS))
    if unknown:
        parser.error(f"unknown lock {', '.join(unknown)}; use any of {', '.join(LOCKS)}")
    # the shared layer first: the image locks keep its pins
    images = [lock for lock in LOCKS if lock in (args.images or LOCKS)]
    pyproject = load_pyproject()
    failures = 0
    for image in images:
        path = lock_path(image)
        common_path = lock_path(COMMON)
        common = common_path.read_text() if common_path.exists() else ""
        try:
            if args.check:
                text = path.read_text() if path.exists() else ""
                found = problems(pyproject, image, text, common)
                for line in found:
                    print(f"error: {line}", file=sys.stderr)
                failures += bool(found)
                continue
            pinned = tuple(pins_of(common)) if image in IMAGE_EXTRAS else ()
            text = installable_lock(image, wheels=args.wheels, pinned=pinned)
        except LockError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failures += 1
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(
            f"{path.relative_to(REPO)}: {len(read_lock(text).pins)} distributions", file=sys.stderr
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
