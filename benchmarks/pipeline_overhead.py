"""kfp.local overhead: an experiment's pipeline through kfp.local vs the same step functions
called one after another in one process, measured side by side in one run (goal: ratio <= 1.15,
its min and max within 0.1 of each other).

Both ways start from a fresh interpreter and are timed from its start, so each pays its imports:
once for the single process, once per step for the pipeline (every step is its own process, as
in a container). The overhead is what a user waits for beyond the steps' own work.

    python benchmarks/pipeline_overhead.py [--experiment mnist] [--images 10000] [--rounds 5]
                                           [--set models.0.epochs=8 ...]

The default is the `mnist` experiment on 10,000 made digits in MNIST's layout (those of
benchmarks/recipes.py, as a `csv:` manifest with a held-out test split), as no dataset can be
downloaded here; `--images 0` keeps the experiment's own source (`--experiment digits`: the
scikit-learn digits, a pipeline whose steps are all start-up).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from sides import ROUNDS, add_set_argument, alternate

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def in_process(experiment_name: str, workdir: Path, overrides: list[str]) -> None:
    """ingest -> train -> evaluate (per candidate x seed) -> compare -> gate -> register, no KFP."""
    from components.common.results import EvaluationResult, Reference
    from components.compare.run import compare
    from components.evaluate.run import evaluate
    from components.ingest.run import ingest
    from components.register.run import register_local
    from components.spec import Candidate
    from components.train.run import train
    from pipelines.config import load_experiment

    experiment = load_experiment(experiment_name, overrides)
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
            workdir / f"tensorboard-{index}",  # the pipeline's train step writes them too
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


def through_kfp_local(experiment_name: str, workdir: Path, overrides: list[str]) -> None:
    from pipelines.config import load_experiment
    from pipelines.targets.base import RunOptions
    from pipelines.targets.local import LocalTarget

    result = LocalTarget(
        load_experiment(experiment_name, overrides), RunOptions(runs_dir=workdir, cache=False)
    ).run()
    if result["status"] != "SUCCEEDED":
        raise SystemExit(f"the pipeline failed: {result['error']}")


def timed_in_fresh_interpreter(
    function: str, experiment: str, workdir: Path, overrides: list[str]
) -> float:
    code = (
        "import json, pathlib, sys, time; started = time.perf_counter(); "
        "sys.path.insert(0, sys.argv[1]); import pipeline_overhead; "
        f"pipeline_overhead.{function}(sys.argv[2], pathlib.Path(sys.argv[3]), "
        "json.loads(sys.argv[4])); print(time.perf_counter() - started)"
    )
    args = [str(Path(__file__).parent), experiment, str(workdir), json.dumps(overrides)]
    completed = subprocess.run(
        [sys.executable, "-c", code, *args],
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
    parser.add_argument("--experiment", default="mnist")
    parser.add_argument(
        "--images",
        type=int,
        default=10_000,
        help="made digits to read instead of the experiment's source (0: its own source)",
    )
    parser.add_argument(
        "--rounds", type=int, default=ROUNDS, help=f"alternations after a warm-up (>= {ROUNDS})"
    )
    add_set_argument(parser)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        overrides = list(args.overrides)
        source = "its own source"
        if args.images:
            from recipes import make_digit_source

            manifest = make_digit_source(Path(folder) / "digits", args.images)
            # made digits may score below MNIST's 0.99 gate: lowered, the register step runs
            overrides += [f"data.source=csv:{manifest}", "gate.min=0.5"]
            source = f"{args.images} made digits"

        def side(function: str) -> Callable[[int], float]:
            return lambda round_: timed_in_fresh_interpreter(
                function, args.experiment, Path(folder) / f"{function}-{round_}", overrides
            )

        sides = alternate(
            {"pipeline": side("through_kfp_local"), "direct": side("in_process")}, args.rounds
        )
    print(
        f"pipeline overhead ({args.experiment} on {source}, median of {args.rounds} "
        "alternated rounds):"
    )
    print(f"  steps in one process : {sides.median('direct'):7.1f} s")
    print(f"  kfp.local pipeline   : {sides.median('pipeline'):7.1f} s")
    print(f"  ratio                : {sides.ratio('pipeline', 'direct')}  (goal <= 1.15)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
