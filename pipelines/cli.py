"""`python pipelines/submit.py`: compile an experiment into a KFP pipeline and run or submit it.

Exit codes: 0 success; 1 the run failed; 2 usage, config or preflight error (nothing ran);
3 the run finished but the best model missed the gate (nothing registered); 4 candidate tasks
failed and the others were compared (compare.on_failure: continue); 130 / 143 / 129 the run was
stopped by SIGINT / SIGTERM / SIGHUP (the same command resumes it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.common.results import CompareSummary
from components.ingest.snapshot import take_snapshot
from components.ingest.sources.hashing import SnapshotError
from components.ingest.sources.listing import Listings
from pipelines.config import (
    ConfigError,
    check_metrics,
    list_experiments,
    load_experiment,
    weights_problems,
)
from pipelines.errors import EXIT_PARTIAL
from pipelines.targets import TARGETS

if TYPE_CHECKING:
    from pipelines.targets.base import Target

EXIT_FAILED, EXIT_USAGE, EXIT_GATE = 1, 2, 3
COMPILED_SUFFIXES = (".yaml", ".yml")

EPILOG = """\
examples:
  python pipelines/submit.py --experiment digits
  python pipelines/submit.py --experiment pets --set models.0.epochs=1 --set data.source=folder:/data/pets
  python pipelines/submit.py --experiment pets --target vertex --compile-only pets.yaml
  python pipelines/submit.py --experiment my_experiment.yaml --target kfp --host http://localhost:8080
  python pipelines/submit.py --list

exit codes: 0 ok, 1 run failed, 2 usage/config error (nothing ran), 3 gate missed (nothing registered),
  4 some candidates failed, the rest compared (compare.on_failure: continue),
  130/143/129 stopped by SIGINT/SIGTERM/SIGHUP (run the same command again to resume)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="submit.py",
        description="Compile an image-classification experiment into a Kubeflow pipeline and run it "
        "locally (kfp.local), on Vertex AI Pipelines or on a KFP cluster.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-e",
        "--experiment",
        metavar="NAME|FILE",
        help="a bundled experiment name (see --list) or a path to an experiment YAML file",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field; dotted keys, list indices and YAML values, e.g. models.0.epochs=1 or seeds=[0,1,2]; repeatable",
    )
    parser.add_argument(
        "-t",
        "--target",
        choices=TARGETS,
        default="local",
        help="where to run: local (kfp.local in this environment, default), vertex (Vertex AI Pipelines) or kfp (a KFP API server)",
    )
    parser.add_argument(
        "--runner",
        choices=("subprocess", "docker"),
        default="subprocess",
        help="local target: run each step as a process in this environment (subprocess, default) "
        "or in its image with the local Docker daemon (docker: the experiment's images.*, "
        "by default those `make images-local` builds; uid 1000, as on a cluster)",
    )
    parser.add_argument(
        "--compile-only",
        metavar="FILE",
        type=Path,
        help="write the compiled pipeline YAML for --target to FILE and stop (offline, no credentials)",
    )
    parser.add_argument(
        "--images",
        action="store_true",
        help="print the images the experiment's steps run in on --target (config field and "
        "image, one a line) and exit; infra/kind/load.sh builds and loads those",
    )
    parser.add_argument(
        "--list",
        action="store_true",
        help="list the bundled experiments with their descriptions and exit",
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="re-run every step instead of reusing cached results (training still resumes "
        "from its checkpoints)",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="re-run every step and train from scratch, ignoring training checkpoints",
    )
    parser.add_argument(
        "--runs-dir",
        type=Path,
        default=Path("runs"),
        metavar="DIR",
        help="local target: where run artifacts and the model registry go (default: ./runs)",
    )
    parser.add_argument(
        "--host", metavar="URL", help="kfp target: the KFP API address, e.g. http://localhost:8080"
    )
    parser.add_argument(
        "--wait", action="store_true", help="vertex/kfp targets: wait until the run ends"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="local target: stream every step's own output (kfp.local, TensorFlow, Keras) "
        "instead of keeping it in the task's log file",
    )
    parser.add_argument(
        "--compare",
        nargs="+",
        metavar="RUN",
        help="compare local runs (run folders, run names, or last:N): a table here and "
        "compare.html under --runs-dir",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the result as JSON on stdout (logs stay on stderr)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        return _list(args.json)
    if args.compare:
        return _compare(args.compare, args.runs_dir)
    if not args.experiment:
        parser.error("--experiment is required (or use --list to see the experiments)")
    try:
        experiment = load_experiment(args.experiment, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    from pipelines.targets import get_target
    from pipelines.targets.base import PreflightError, RunOptions, SubmitError

    options = RunOptions(
        runs_dir=args.runs_dir,
        cache=not (args.no_cache or args.fresh),
        host=args.host,
        wait=args.wait,
        verbose=args.verbose,
        fresh=args.fresh,
        runner=args.runner,
    )
    target = get_target(args.target, experiment, options)
    if args.runner not in target.runners:
        print(
            f"error: --runner {args.runner} is for --target local only; {args.target} runs the "
            "steps in the experiment's images itself",
            file=sys.stderr,
        )
        return EXIT_USAGE
    not_here = target.steps_only_paths()
    listings = Listings()  # each local source listed once: preflight, class count, snapshot
    problems = check_paths(args, target) or [
        *data_preflight(experiment, not_here, listings),
        *weights_problems(experiment, not_here),
    ]
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        check_metrics(experiment, not_here, listings)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.images:
        for field, image in target.used_images().items():
            print(f"{field} {image}")
        return 0
    for warning in target.warnings_before_compiling():
        print(f"warning: {warning}", file=sys.stderr)
    if args.compile_only:
        return _compile_only(target, experiment, args)
    problems = target.registry_preflight(not_here, listings)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        options.data_snapshot = _data_snapshot(experiment, not_here, listings)
    except SnapshotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = target.run()
    except PreflightError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SubmitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    summary = result.get("summary")
    gate_missed = bool(summary) and not CompareSummary.model_validate(summary).gate.passed
    if result.get("status") in ("SUCCEEDED", "PARTIAL") and gate_missed:
        result["status"] = "GATE MISSED"
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        from pipelines.summary import format_result

        print(format_result(result))
    if result.get("status") == "STOPPED":
        return int(result["exit_code"])
    if result.get("status") == "FAILED":
        return EXIT_FAILED
    if result.get("status") == "PARTIAL":
        return EXIT_PARTIAL
    return EXIT_GATE if gate_missed else 0


def _compile_only(target: Any, experiment: Any, args: argparse.Namespace) -> int:
    try:
        path = target.compile(args.compile_only)
    except OSError as exc:
        print(f"error: --compile-only {args.compile_only}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    result: dict[str, Any] = {
        "experiment": experiment.name,
        "target": args.target,
        "compiled": str(path),
    }
    _print(result, args.json, f"compiled {experiment.name} for {args.target}: {path}")
    return 0


def _data_snapshot(experiment: Any, not_here: tuple[str, ...], listings: Listings) -> str:
    """Snapshot the source (the cache key of ingest) and say so on stderr."""
    snapshot = take_snapshot(experiment.data, not_here=not_here, listings=listings)
    print(snapshot.describe(), file=sys.stderr)
    return snapshot.digest


def check_paths(args: argparse.Namespace, target: Target) -> list[str]:
    """Problems with the output paths the flags name, before anything is compiled or run."""
    try:
        return _path_problems(args, target)
    except OSError as exc:  # a name too long, a loop of links, ...
        flag = "--compile-only" if args.compile_only is not None else "--runs-dir"
        return [f"{flag} {exc.filename or ''}: {exc.strerror or exc}"]


def _path_problems(args: argparse.Namespace, target: Target) -> list[str]:
    problems = []
    if args.compile_only is not None:
        output: Path = args.compile_only
        if output.is_dir():
            problems.append(
                f"--compile-only {output} is a folder; give a file, e.g. {output / 'pipeline.yaml'}"
            )
        elif output.suffix not in COMPILED_SUFFIXES:
            problems.append(
                f"--compile-only {output}: the compiled pipeline is YAML; give a file name "
                f"ending in .yaml, e.g. {output.with_suffix('.yaml')}"
            )
        else:
            problem = _unwritable(output.parent)
            if problem:
                problems.append(f"--compile-only {output}: {problem}")
    elif target.writes_runs_dir:
        problem = _unwritable(args.runs_dir, itself=True)
        if problem:
            problems.append(f"--runs-dir {args.runs_dir}: {problem}")
    return problems


def _unwritable(folder: Path, itself: bool = False) -> str | None:
    """Why files cannot be written in `folder` (made on demand), or None when they can."""
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        what = "is a file" if existing == folder else f"is below the file {existing}"
        return f"{'it' if itself or existing == folder else folder} {what}, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot write in {existing} (permission denied); choose another path"
    return None


def data_preflight(
    experiment: Any, not_here: tuple[str, ...], listings: Listings | None = None
) -> list[str]:
    """What is wrong with the data sources, as far as can be seen from here (no images read)."""
    from components.ingest.preflight import preflight

    return preflight(experiment.data, not_here, listings)


def _compare(specs: list[str], runs_dir: Path) -> int:
    from pipelines.compare_runs import CompareError, compare_runs

    try:
        lines, page = compare_runs(specs, Path(runs_dir))
    except (CompareError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print("\n".join(lines))
    print(f"curves and metrics: {page}")
    return 0


def _list(as_json: bool) -> int:
    experiments = list_experiments()
    if as_json:
        print(json.dumps(experiments, indent=2))
    else:
        width = max(map(len, experiments))
        for name, description in experiments.items():
            print(f"{name:<{width}}  {description}")
    return 0


def _print(result: dict[str, Any], as_json: bool, text: str) -> None:
    print(json.dumps(result, indent=2) if as_json else text)


if __name__ == "__main__":
    sys.exit(main())
