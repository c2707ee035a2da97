"""Parity and latency of a running server: `python -m components.serve.check`.

Sends the test split's first images (64 by default) of a Dataset to the server, in requests of
`batch` images, and compares each answer's top-1 with the evaluate step's predictions of the
same image (by key): every one must agree. Then it loads the server with a bounded number of
one-image requests from a few threads, for at most a bounded time, and reports the p50/p95
latency and the throughput. Only a server on this machine (a loopback address) is loaded.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import json
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

EXIT_OK, EXIT_MISMATCH, EXIT_ERROR = 0, 1, 2
PARITY_IMAGES = 64


class CheckError(RuntimeError):
    """The check could not run (server not ready, not on loopback, files missing)."""


@dataclass
class CheckReport:
    images: int
    agreed: int
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    seconds: float = 0.0
    latency_ms_p50: float = 0.0
    latency_ms_p95: float = 0.0
    throughput: float = 0.0  # images per second under the load

    @property
    def passed(self) -> bool:
        return self.agreed == self.images and not self.mismatches

    def summary(self) -> str:
        verdict = "same top-1" if self.passed else f"{len(self.mismatches)} different top-1"
        return (
            f"parity: {self.agreed}/{self.images} test images, {verdict}; load: "
            f"{self.requests} requests in {self.seconds:.1f} s, p50 {self.latency_ms_p50:.1f} ms, "
            f"p95 {self.latency_ms_p95:.1f} ms, {self.throughput:.1f} images/s"
        )


def require_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise CheckError(
            f"{url} is not on this machine; the check loads the server, so run it beside the "
            "server against http://127.0.0.1:PORT (kubectl port-forward for a cluster)"
        )


def _request(url: str, body: bytes | None = None, timeout: float = 60) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"} if body else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def wait_ready(ready_url: str, deadline_s: float = 120.0) -> None:
    """Poll the readiness route until it answers 200 or `deadline_s` passes."""
    end = time.monotonic() + deadline_s
    problem = ""
    while time.monotonic() < end:
        try:
            status, _ = _request(ready_url, timeout=5)
            if status == 200:
                return
            problem = f"it answers {status}"
        except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
            problem = str(getattr(exc, "reason", exc))
        time.sleep(0.2)
    raise CheckError(f"{ready_url} was not ready within {deadline_s:.0f} s ({problem})")


def instances_body(images: list[bytes]) -> bytes:
    instances = [
        {"image_bytes": {"b64": base64.b64encode(data).decode("ascii")}} for data in images
    ]
    return json.dumps({"instances": instances}).encode()


def predict(predict_url: str, images: list[bytes]) -> list[dict[str, Any]]:
    status, answer = _request(predict_url, instances_body(images))
    if status != 200:
        raise CheckError(f"{predict_url} answered {status}: {answer}")
    return list(answer["predictions"])


def first_test_images(dataset_dir: str | Path, count: int) -> list[tuple[str, bytes]]:
    from components.common.tfrecord import read_examples

    found = []
    for example in read_examples(dataset_dir, "test"):
        found.append((str(example["key"]), bytes(example["image"])))
        if len(found) == count:
            break
    if not found:
        raise CheckError(f"{dataset_dir} has no test images")
    return found


def evaluated_top1(predictions: str | Path) -> dict[str, str]:
    """key -> class name of the evaluate step's top-1, from its predictions.npz (or folder)."""
    from components.evaluate.run import PREDICTIONS_FILE

    path = Path(predictions)
    if path.is_dir():
        path = path / PREDICTIONS_FILE
    if not path.is_file():
        raise CheckError(f"{path} does not exist; pass the evaluate step's predictions folder")
    with np.load(path, allow_pickle=False) as stored:
        names = [str(n) for n in stored["class_names"]]
        top = stored["probabilities"].argmax(axis=1)
        return {str(k): names[int(i)] for k, i in zip(stored["keys"], top, strict=True)}


def check_parity(
    ready_url: str, dataset_dir: str | Path, predictions: str | Path, count: int, batch: int
) -> CheckReport:
    expected = evaluated_top1(predictions)
    images = first_test_images(dataset_dir, count)
    predict_url = ready_url + ":predict"
    report = CheckReport(images=len(images), agreed=0)
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        for (key, _), answer in zip(
            chunk, predict(predict_url, [d for _, d in chunk]), strict=True
        ):
            if key not in expected:
                raise CheckError(f"test image {key} is not in the predictions; same Dataset?")
            if answer["label"] == expected[key]:
                report.agreed += 1
            else:
                report.mismatches.append(
                    {"key": key, "served": answer["label"], "evaluated": expected[key]}
                )
    return report


def measure_load(
    predict_url: str, images: list[bytes], requests: int, concurrency: int, seconds: float
) -> dict[str, float]:
    """Send up to `requests` one-image requests from `concurrency` threads, stopping after
    `seconds`; the latency percentiles (ms) and images per second of the ones sent."""
    bodies = [instances_body([data]) for data in images]
    end = time.monotonic() + seconds
    latencies: list[float] = []

    def one(index: int) -> None:
        if time.monotonic() > end:
            return
        started = time.perf_counter()
        status, answer = _request(predict_url, bodies[index % len(bodies)])
        if status != 200:
            raise CheckError(f"{predict_url} answered {status} under load: {answer}")
        latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, range(requests)))
    elapsed = time.perf_counter() - started
    milliseconds = np.asarray(latencies) * 1000
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "latency_ms_p50": float(np.percentile(milliseconds, 50)) if latencies else 0.0,
        "latency_ms_p95": float(np.percentile(milliseconds, 95)) if latencies else 0.0,
        "throughput": len(latencies) / elapsed if elapsed > 0 else 0.0,
    }


def run_check(
    url: str,
    dataset_dir: str | Path,
    predictions: str | Path,
    count: int = PARITY_IMAGES,
    batch: int = 16,
    requests: int = 200,
    concurrency: int = 4,
    seconds: float = 30.0,
    wait_s: float = 120.0,
) -> CheckReport:
    """Parity of the server at `url` (its readiness route, `.../v1/models/NAME`) with the
    evaluate step's predictions, then its latency under a bounded load."""
    require_loopback(url)
    url = url.rstrip("/")
    wait_ready(url, wait_s)
    report = check_parity(url, dataset_dir, predictions, count, batch)
    images = [data for _, data in first_test_images(dataset_dir, count)]
    load = measure_load(url + ":predict", images, requests, concurrency, seconds)
    report.requests = int(load["requests"])
    report.seconds = load["seconds"]
    report.latency_ms_p50 = load["latency_ms_p50"]
    report.latency_ms_p95 = load["latency_ms_p95"]
    report.throughput = load["throughput"]
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m components.serve.check",
        description="Check a running server against the evaluate step: same top-1 on the test "
        "split's first images, then p50/p95 latency and throughput under a bounded load.",
    )
    parser.add_argument(
        "--url",
        required=True,
        help="the model's readiness URL, http://127.0.0.1:PORT/v1/models/NAME",
    )
    parser.add_argument("--dataset", required=True, type=Path, help="the Dataset artifact folder")
    parser.add_argument(
        "--predictions", required=True, type=Path, help="the evaluate step's predictions folder"
    )
    parser.add_argument("--images", type=int, default=PARITY_IMAGES, help="test images compared")
    parser.add_argument("--batch", type=int, default=16, help="images per parity request")
    parser.add_argument("--requests", type=int, default=200, help="requests of the load (at most)")
    parser.add_argument("--concurrency", type=int, default=4, help="threads sending the load")
    parser.add_argument("--seconds", type=float, default=30.0, help="time limit of the load")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("images", "batch", "requests", "concurrency"):
        if getattr(args, name) < 1:
            print(f"error: --{name} must be at least 1", file=sys.stderr)
            return EXIT_ERROR
    try:
        report = run_check(
            args.url,
            args.dataset,
            args.predictions,
            args.images,
            args.batch,
            args.requests,
            args.concurrency,
            args.seconds,
        )
    except CheckError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps({**asdict(report), "passed": report.passed}, indent=2))
    else:
        print(report.summary())
        for row in report.mismatches:
            print(f"  {row['key']}: served {row['served']}, evaluated {row['evaluated']}")
    return EXIT_OK if report.passed else EXIT_MISMATCH


if __name__ == "__main__":
    sys.exit(main())
