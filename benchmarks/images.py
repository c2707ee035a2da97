"""Step image builds: cold, warm after a code-only change, and the disk the four images take.

Builds the four images (cpu, gpu, tpu, transformers) with containers/build.sh from a scratch
checkout of HEAD (git worktree), tagged with a prefix of their own (`bench-`), so the project's
images keep their tags:

- cold: the project's and the benchmark's images and every dangling layer removed first (the
  base image is kept: `make base-image` builds it, about a minute), then the four built one after
  another, as `make images-local` builds them on an empty daemon;
- warm: a comment appended to a module of the scratch checkout (a code-only change), the four
  built again: only the project's wheel and the last layer are rebuilt;
- disk: the distinct layers of the four images together (a layer two images share counts once),
  beside the sum of their sizes as `docker images` shows them.

With `--old REV` it first builds the four-Dockerfile layout of REV (the one before
containers/Dockerfile) cold the same way, side by side, and says where it fails.

    python benchmarks/images.py [--old REV] [--skip-cold]

It deletes the project's images (`image-classification-<image>`): rebuild them with
`make images-local` afterwards (the layer cache of this run makes that quick).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGES = ("cpu", "gpu", "tpu", "transformers")
PREFIX = "bench-"
GOALS = {"cold": 15 * 60.0, "warm": 20.0}


def docker(*args: str, check: bool = True) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=check
    ).stdout.strip()


def remove_images() -> None:
    """The project's and the benchmark's images, and the layers only they held."""
    for prefix in ("image-classification-", PREFIX):
        for image in IMAGES:
            ids = docker("images", "-q", f"{prefix}*{image}", check=False).split()
            if ids:
                docker("rmi", "-f", *sorted(set(ids)), check=False)
    docker("image", "prune", "-f", check=False)
    docker("builder", "prune", "-af", check=False)


@contextlib.contextmanager
def checkout(rev: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="imgclf-bench-") as scratch:
        tree = Path(scratch) / "tree"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "-q", "--detach", str(tree), rev],
            check=True,
        )
        try:
            yield tree
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False
            )


def build(tree: Path, image: str) -> tuple[float, str]:
    """Seconds and the last line of containers/build.sh for one image ('' when it built)."""
    started = time.perf_counter()
    done = subprocess.run(
        ["bash", str(tree / "containers" / "build.sh"), image],
        cwd=tree,
        capture_output=True,
        text=True,
        env={**os.environ, "IMAGE_PREFIX": PREFIX},
        check=False,
    )
    seconds = time.perf_counter() - started
    errors = [line for line in (done.stdout + done.stderr).splitlines() if "rror" in line]
    return seconds, "" if done.returncode == 0 else (errors[-1] if errors else "failed")[:160]


def build_all(tree: Path, label: str) -> dict[str, tuple[float, str]]:
    found = {}
    for image in IMAGES:
        found[image] = build(tree, image)
        seconds, error = found[image]
        print(f"  {label:<5} {image:<12} {seconds:7.1f} s  {error or 'built'}", file=sys.stderr)
    return found


def disk() -> tuple[int, int]:
    """(distinct layers of the four images, the sum of their sizes), in bytes."""
    layers: dict[str, int] = {}
    total = 0
    for image in IMAGES:
        tag = f"{PREFIX}{image}:latest"
        total += int(docker("image", "inspect", "--format", "{{.Size}}", tag))
        for line in docker(
            "history",
            "--no-trunc",
            "-H=false",
            "--format",
            "{{.ID}}\t{{.CreatedBy}}\t{{.Size}}",
            tag,
        ).splitlines():
            layer_id, created, size = line.split("\t")
            layers[layer_id if layer_id != "<missing>" else created] = int(size)
    return sum(layers.values()), total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", metavar="REV", help="also build REV's image layout cold")
    parser.add_argument("--skip-cold", action="store_true", help="warm rebuild and disk only")
    args = parser.parse_args(argv)
    rows: list[tuple[str, str, str]] = []
    if args.old:
        remove_images()
        with checkout(args.old) as tree:
            old = build_all(tree, "old")
        failed = {i: e for i, (_, e) in old.items() if e}
        seconds = sum(s for s, _ in old.values())
        rows.append(
            (
                "cold, old layout (" + args.old + ")",
                f"{seconds:.0f} s",
                "; ".join(f"{i}: {e}" for i, e in failed.items()) or "built",
            )
        )
    with checkout("HEAD") as tree:
        if not args.skip_cold:
            remove_images()
            cold = build_all(tree, "cold")
            bad = [i for i, (_, e) in cold.items() if e]
            if bad:
                print(f"error: {', '.join(bad)} did not build", file=sys.stderr)
                return 1
            seconds = sum(s for s, _ in cold.values())
            rows.append(("cold, four images", f"{seconds:.0f} s", f"goal <= {GOALS['cold']:.0f} s"))
        module = tree / "components" / "__init__.py"
        module.write_text(module.read_text() + "\n# a code-only change\n")
        warm = build_all(tree, "warm")
        seconds = sum(s for s, _ in warm.values())
        rows.append(
            ("warm, code-only change", f"{seconds:.1f} s", f"goal <= {GOALS['warm']:.0f} s")
        )
    distinct, summed = disk()
    rows.append(
        (
            "disk, four images",
            f"{distinct / 1e9:.2f} GB",
            f"{summed / 1e9:.2f} GB as docker images adds them up",
        )
    )
    width = max(len(r[0]) for r in rows)
    for what, figure, note in rows:
        print(f"{what:<{width}}  {figure:>9}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
