"""kfp.local overhead: the digits pipeline through kfp.local vs the same step functions called
one after another in one process, measured side by side in one run (goal: ratio <= 1.3).

Both ways start from a fresh interpreter and are timed from its start, so each pays its imports:
once for the single process, once per step for the pipeline (every step is its own process, as
in a container).

    python benchmarks/pipeline_overhead.py [--experiment digits] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def in_process(experiment_name: str, workdir: Path) -> None:
    """ingest -> train -> evaluate (per candidate x seed) -> compare -> gate -> register, no KFP."""
    from components.common.results import EvaluationResult, Reference
    from components.compare.run import compare
    from components.evaluate.run import evaluate
    from components.ingest.run import ingest
    from components.register.run import register_local
    from components.spec import Candidate
    from components.train.run import train
    from pipelines.config import load_experiment

    experiment = load_experiment(experiment_name)
    dataset = workdir / "dataset"
    ingest(experiment.data, dataset, workdir / "quarantine.csv")
    reference = experiment.reference.model_dump() if experiment.reference else None
    results = []
    for index, candidate in enumerate(experiment.candidates()):
        spec = candidate["model_spec"]
        task = Candidate.model_validate(candidate)
        model_dir = workdir / f"model-{index}"
        train(
            dataset,
            task.model_spec,
            task.seed,
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
            EvaluationResult(
                name=spec["name"],
                seed=candidate["seed"],
                framework=spec["framework"],
                model_uri=str(model_dir),
                metrics=result["scalars"],
            )
        )
    summary = compare(
        results,
        experiment.gate.metric,
        experiment.gate.min,
        Reference.model_validate(reference) if reference else None,
    )
    if summary.gate.passed:
        register_local(
            summary.best.model_uri,
            workdir / "registry",
            experiment.registration.name,
            summary.best.metrics,
        )


def through_kfp_local(experiment_name: str, workdir: Path) -> None:
    from pipelines.config import load_experiment
    from pipelines.targets.base import RunOptions
    from pipelines.targets.local import LocalTarget

    result = LocalTarget(
        load_experiment(experiment_name), RunOptions(runs_dir=workdir, cache=False)
    ).run()
    if result["status"] != "SUCCEEDED":
        raise SystemExit(f"the pipeline failed: {result['error']}")


def timed_in_fresh_interpreter(function: str, experiment: str, workdir: Path) -> float:
    code = (
        "import pathlib, sys, time; started = time.perf_counter(); sys.path.insert(0, sys.argv[1]); "
        f"import pipeline_overhead; pipeline_overhead.{function}(sys.argv[2], pathlib.Path(sys.argv[3])); "
        "print(time.perf_counter() - started)"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent), experiment, str(workdir)],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise SystemExit(f"{function} failed:\n{completed.stderr[-3000:]}")
    return float(completed.stdout.strip().splitlines()[-1])


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
            pipeline.append(
                timed_in_fresh_interpreter(
                    "through_kfp_local", args.experiment, Path(folder) / f"kfp-{repeat}"
                )
            )
            direct.append(
                timed_in_fresh_interpreter(
                    "in_process", args.experiment, Path(folder) / f"direct-{repeat}"
                )
            )
    ratio = min(pipeline) / min(direct)
    print(f"pipeline overhead ({args.experiment}, best of {args.repeats}):")
    print(f"  steps in one process : {min(direct):7.1f} s")
    print(f"  kfp.local pipeline   : {min(pipeline):7.1f} s")
    print(f"  ratio                : {ratio:7.2f}  (goal <= 1.3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
