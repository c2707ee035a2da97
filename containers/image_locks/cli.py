"""`make lock`: write containers/locks/<lock>.txt from pyproject.toml, or `--check` them offline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from containers.image_locks.inputs import (
    COMMON,
    IMAGE_EXTRAS,
    LOCKS,
    REPO,
    LockError,
    load_pyproject,
    lock_path,
)
from containers.image_locks.lockfile import pins_of, problems, read_lock
from containers.image_locks.resolve import installable_lock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m containers.image_locks",
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
