"""kfp.local overhead: the digits pipeline through kfp.local vs the same step functions called
one after another in one process, measured side by side in one run (goal: ratio <= 1.3).

    python benchmarks/pipeline_overhead.py [--experiment digits] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def in_process(experiment_name: str, workdir: Path) -> float:
    """ingest -> train -> evaluate (per candidate x seed) -> compare -> register, no KFP."""
    from components.compare.run import compare
    from components.evaluate.run import evaluate
    from components.register.run import register_local
    from components.train.run import train
    from pipelines.config import load_experiment

    experiment = load_experiment(experiment_name)
    started = time.perf_counter()
    dataset = workdir / "dataset"
    from components.ingest.run import ingest

    ingest(experiment.data, dataset, workdir / "quarantine.csv")
    reference = experiment.reference.model_dump() if experiment.reference else None
    results = []
    for index, candidate in enumerate(experiment.candidates()):
        model_dir = workdir / f"model-{index}"
        train(
            dataset,
            candidate["model_spec"],
            candidate["seed"],
            model_dir,
            workdir / f"curves-{index}.html",
            workdir / f"ckpt-{index}",
        )
        result = evaluate(
            model_dir,
            dataset,
            workdir / f"predictions-{index}",
            workdir / f"report-{index}.html",
            reference,
        )
        results.append(
            {
                "name": candidate["model_spec"]["name"],
                "seed": candidate["seed"],
                "framework": candidate["model_spec"]["framework"],
                "model_uri": str(model_dir),
                "metrics": result["scalars"],
            }
        )
    summary = compare(results, experiment.gate.metric, experiment.gate.min, reference)
    if summary["gate"]["passed"]:
        assert experiment.registration is not None
        register_local(
            summary["best"]["model_uri"],
            workdir / "registry",
            experiment.registration.name,
            summary["best"]["metrics"],
        )
    return time.perf_counter() - started


def through_kfp_local(experiment_name: str, workdir: Path) -> float:
    from pipelines.config import load_experiment
    from pipelines.targets.base import RunOptions
    from pipelines.targets.local import LocalTarget

    target = LocalTarget(
        load_experiment(experiment_name), RunOptions(runs_dir=workdir, cache=False)
    )
    started = time.perf_counter()
    result = target.run()
    elapsed = time.perf_counter() - started
    if result["status"] != "SUCCEEDED":
        raise SystemExit(f"the pipeline failed: {result['error']}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--experiment", default="digits")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="alternate the two ways this many times; the best time of each counts",
    )
    args = parser.parse_args(argv)
    direct, pipeline = [], []
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):
            # The pipeline goes first so the in-process run does not profit from a warm import cache.
            pipeline.append(through_kfp_local(args.experiment, Path(folder) / f"kfp-{repeat}"))
            direct.append(in_process(args.experiment, Path(folder) / f"direct-{repeat}"))
    ratio = min(pipeline) / min(direct)
    print(f"pipeline overhead ({args.experiment}, best of {args.repeats}):", file=sys.stderr)
    print(f"  steps in one process : {min(direct):7.1f} s")
    print(f"  kfp.local pipeline   : {min(pipeline):7.1f} s")
    print(f"  ratio                : {ratio:7.2f}  (goal <= 1.3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
