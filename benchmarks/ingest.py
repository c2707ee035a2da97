"""Ingest throughput and memory, measured side by side in one run.

1. Throughput: a generated folder of photo-sized JPEGs, decoded bare by Pillow (in one process,
   and on a pool of the worker count ingest uses) and ingested (validation, hashing, duplicates,
   splits, TFRecords, quarantine CSV), each ingest in a fresh process; ingest is also shown in
   one process and with its HTML report. Goal: ingest as the step runs it >= 0.8 x the faster
   bare decode, in images/s. CPU time per image is printed beside it: other processes on a
   shared machine move the wall-clock figures, much less the CPU ones.
2. Memory: peak resident memory of ingest at 1x and 10x as many (small, distinct) images, each
   ingest in a fresh process. Goal: peak at 10x <= 1.2 x peak at 1x.

    python benchmarks/ingest.py [--images 2500] [--workers N] [--rounds 5] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sides import ROUNDS, alternate

ROOT = Path(__file__).resolve().parents[1]
THROUGHPUT_GOAL = 0.8
MEMORY_GOAL = 1.2


def generate(folder: Path, count: int, size: tuple[int, int], seed: int) -> list[Path]:
    """`count` distinct noisy-gradient JPEGs in two class folders (kept if already there)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    width, height = size
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    paths = []
    for index in range(count):
        path = folder / ("cat" if index % 2 else "dog") / f"{index:06d}.jpg"
        paths.append(path)
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tint = rng.random(3, dtype=np.float32)
        noise = rng.normal(0, 18, (height, width, 3)).astype(np.float32)
        pixels = np.clip(ramp * tint + noise + 40, 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        path.write_bytes(buffer.getvalue())
    return paths


def _decode_files(paths: list[str]) -> int:
    from PIL import Image

    for path in paths:
        with open(path, "rb") as file, Image.open(io.BytesIO(file.read())) as image:
            image.load()
    return len(paths)


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bare_decode(paths: list[Path], workers: int) -> tuple[float, float]:
    """(images/s, CPU ms per image) of a bare Pillow decode: in this process when `workers`
    is 1, else on a pool of `workers` processes."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from components.ingest.parallel import CHUNK_SIZE, start_method

    names = [str(p) for p in paths]
    wall, cpu = time.perf_counter(), _cpu_seconds()
    if workers == 1:
        _decode_files(names)
        return _rates(len(names), wall, cpu)
    context = multiprocessing.get_context(start_method())
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        chunks = [names[i : i + CHUNK_SIZE] for i in range(0, len(names), CHUNK_SIZE)]
        sum(pool.map(_decode_files, chunks))
    return _rates(len(names), wall, cpu)


def _rates(images: int, wall_start: float, cpu_start: float) -> tuple[float, float]:
    wall, cpu = time.perf_counter() - wall_start, _cpu_seconds() - cpu_start
    return images / wall, 1000 * cpu / images


def run_ingest(folder: Path, workdir: Path, workers: int, report: bool = True) -> dict[str, Any]:
    """Ingest `folder` in a fresh Python process; its timings and peak memory."""
    command = [
        sys.executable,
        __file__,
        "--child",
        str(folder),
        str(workdir),
        str(workers),
        str(int(report)),
    ]
    done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(folder: str, workdir: str, workers: int, report: bool) -> None:
    from components.ingest.run import ingest

    config = {"source": f"folder:{folder}", "splits": {"validation": 0.1, "test": 0.1}}
    out = Path(workdir)
    before = _rss_now_mib()
    wall, cpu = time.perf_counter(), _cpu_seconds()
    html = out / "report.html" if report else None
    info = ingest(config, out / "dataset", out / "quarantine.csv", html, workers=workers)
    rate, cpu_ms = _rates(info["kept"], wall, cpu)
    print(
        json.dumps(
            {
                "images": info["kept"],
                "quarantined": info["quarantined"],
                "seconds": time.perf_counter() - wall,
                "rate": rate,
                "cpu_ms": cpu_ms,
                "rss_before_mib": before,
                "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "worker_peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            }
        )
    )


def _rss_now_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--images", type=int, default=2500, help="photo-sized JPEGs, and the 1x of the memory test"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="decode processes (default: every core)"
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep generated images here between runs"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=ROUNDS,
        help=f"alternated throughput rounds after a warm-up (>= {ROUNDS})",
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]), args.child[3] == "1")
        return 0

    from components.ingest.parallel import default_workers

    workers = args.workers or default_workers()
    scratch = None if args.workdir else tempfile.TemporaryDirectory(prefix="bench-ingest-")
    workdir = args.workdir or Path(scratch.name)  # type: ignore[union-attr]
    try:
        print(
            f"ingest benchmark: {args.images} images, {workers} worker process(es), {os.cpu_count()} CPUs"
        )
        started = time.perf_counter()
        photos = generate(workdir / "photos", args.images, (384, 288), seed=1)
        print(f"  generated {len(photos)} 384x288 JPEGs in {time.perf_counter() - started:.1f}s")
        # Other processes may share the machine: the sides alternate, medians count.
        cpu_ms: dict[str, list[float]] = {}

        def side(name: str, measure: Any) -> Any:
            def timed(round_: int) -> float:
                rate, ms = measure(round_)
                if round_ >= 0:
                    cpu_ms.setdefault(name, []).append(ms)
                return rate

            return timed

        def ingest_side(name: str, n: int, report: bool) -> Any:
            def measure(round_: int) -> tuple[float, float]:
                out = workdir / f"out-{name}-{round_}"
                result = run_ingest(workdir / "photos", out, n, report)
                return result["rate"], result["cpu_ms"]

            return side(name, measure)

        sides = alternate(
            {
                "serial": side("serial", lambda _: bare_decode(photos, 1)),
                "pooled": side("pooled", lambda _: bare_decode(photos, workers)),
                "ingest": ingest_side("ingest", workers, False),
                "ingest-1": ingest_side("ingest-1", 1, False),
                "step": ingest_side("step", workers, True),
            },
            args.rounds,
        )
        baseline = max(("serial", "pooled"), key=sides.median)
        rows = (
            ("bare Pillow decode, 1 process", "serial"),
            (f"bare Pillow decode, {workers} worker processes", "pooled"),
            ("ingest, 1 process", "ingest-1"),
            (f"ingest, {workers} worker processes", "ingest"),
            (f"ingest, {workers} worker processes + HTML report", "step"),
        )
        print(f"throughput, median of {args.rounds} alternated rounds (ratios to {baseline}):")
        print(f"  {'':46}{'images/s':>9}{'CPU ms/image':>14}  ratio (min, max)")
        for label, name in rows:
            ms = statistics.median(cpu_ms[name])
            print(f"  {label:46}{sides.median(name):9.0f}{ms:14.2f}  {sides.ratio(name, baseline)}")
        ratio = statistics.median(sides.ratios("ingest", baseline))
        verdict = "meets" if ratio >= THROUGHPUT_GOAL else "misses"
        print(
            f"  ingest as the step runs it ({workers} worker processes; decode, validate, split, write "
            f"shards) / the faster bare decode = {ratio:.2f}: {verdict} the goal >= {THROUGHPUT_GOAL}"
        )
        print("  (CPU ms/image counts every process: the ingest's workers, parent and report)")

        small = args.images
        started = time.perf_counter()
        generate(workdir / "small-1x", small, (64, 48), seed=2)
        generate(workdir / "small-10x", small * 10, (64, 48), seed=3)
        print(
            f"  generated {small} + {small * 10} 64x48 JPEGs in {time.perf_counter() - started:.1f}s"
        )
        runs: dict[str, list[dict[str, Any]]] = {"1x": [], "10x": []}

        def memory_side(name: str) -> Any:
            def measure(round_: int) -> float:
                row = run_ingest(
                    workdir / f"small-{name}", workdir / f"out-{name}-{round_}", workers
                )
                if round_ >= 0:
                    runs[name].append(row)
                return float(row["peak_mib"])

            return measure

        memory = alternate({"1x": memory_side("1x"), "10x": memory_side("10x")}, args.rounds)
        print(f"peak resident memory (MiB), median of {args.rounds} alternated rounds:")
        print(f"  {'':14}{'images':>8}{'before':>9}{'peak':>9}{'worker peak':>13}{'seconds':>9}")
        for name, rows_ in runs.items():
            median = {k: statistics.median(r[k] for r in rows_) for k in rows_[0] if k != "images"}
            print(
                f"  ingest {name:<7}{rows_[0]['images']:8d}{median['rss_before_mib']:9.0f}"
                f"{median['peak_mib']:9.0f}{median['worker_peak_mib']:13.0f}{median['seconds']:9.1f}"
            )
        peak_ratio = statistics.median(memory.ratios("10x", "1x"))
        verdict = "meets" if peak_ratio <= MEMORY_GOAL else "misses"
        print(
            f"  ratio peak 10x / 1x {memory.ratio('10x', '1x')} ({verdict} the goal <= {MEMORY_GOAL})"
        )
        worker_peaks = [statistics.median(r["worker_peak_mib"] for r in runs[n]) for n in runs]
        if worker_peaks[0] > 0:
            print(f"  worker peak ratio 10x / 1x {worker_peaks[1] / worker_peaks[0]:.2f} (medians)")
    finally:
        if scratch is not None:
            scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
