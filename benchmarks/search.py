"""Hyperparameter search vs the bundled recipe on digits, side by side in one run: the best
validation accuracy, the test accuracy of the model each side would register, and wall time.

Side A trains the bundled digits recipe once; side B runs a search of `--trials` trials (rounds of
4, TPE, median early stop) around it with the pipeline's own study code (suggest -> train each
trial -> tell), and its best trial is the model evaluated on the test split. The sides alternate
A B A B after a warm-up, one seed per repeat; figures are medians with min-max. The gain of the
search is printed as the pipeline's run summary prints it: mean ± std over the repeats (paired by
seed), judged against its noise (components/search/gain.py), with the time ratio.

    python benchmarks/search.py [--trials 12] [--repeats 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SEARCH = (
    "models.0.search={{trials: {trials}, parallel_trials: 4, algorithm: tpe, early_stop: median,"
    " space: {{optimizer.learning_rate: {{log_uniform: [1.0e-3, 1.0e-2]}},"
    " batch_size: {{choice: [16, 32, 64]}}, params.filters: {{choice: [16, 32, 64]}},"
    " params.dropout: {{uniform: [0.0, 0.5]}}}}}}"
)


def test_accuracy(model_dir: Path, dataset: Path, workdir: Path) -> float:
    from components.evaluate.run import evaluate

    result = evaluate(model_dir, dataset, workdir / "predictions", workdir / "report.html")
    return float(result["scalars"]["accuracy"])


def recipe(dataset: Path, workdir: Path, seed: int) -> dict[str, float]:
    """Side A: the bundled recipe, trained once."""
    from components.train.run import train
    from pipelines.config import load_experiment

    spec = load_experiment("digits").models[0]
    started = time.perf_counter()
    card = train(dataset, spec, seed, workdir / "model", workdir / "c.html")
    seconds = time.perf_counter() - started
    return {
        "val_accuracy": max(card.history["val_accuracy"]),
        "test_accuracy": test_accuracy(workdir / "model", dataset, workdir),
        "seconds": seconds,
    }


def search(dataset: Path, workdir: Path, seed: int, trials: int) -> dict[str, float]:
    """Side B: the search, round by round as the pipeline runs it (trials one after another)."""
    from components.common.search_summary import SearchSummary
    from components.search import study
    from components.search.journal import base_spec
    from components.spec import Candidate
    from components.train.run import train
    from pipelines.config import load_experiment

    spec = load_experiment("digits", [SEARCH.format(trials=trials)]).models[0]
    assert spec.search is not None
    base, config = base_spec(spec), spec.search.study()
    started = time.perf_counter()
    journal: Path | None = None
    summary: SearchSummary | None = None
    for index, count in enumerate(spec.search.rounds()):
        asked = workdir / f"suggest-{index}"
        models = []
        for item in study.suggest(journal, asked, base, config, seed, count):
            candidate = Candidate.model_validate(item)
            folder = workdir / f"trial-{candidate.trial}"
            train(
                dataset,
                candidate.model_spec,
                candidate.seed,
                folder,
                folder / "curves.html",
                trial=candidate.trial,
                prune=candidate.prune,
            )
            models.append((folder, str(folder)))
        journal = workdir / f"tell-{index}"
        summary = SearchSummary.model_validate(study.tell(asked, journal, base, config, models))
    seconds = time.perf_counter() - started
    assert summary is not None and summary.best is not None
    best = summary.best
    pruned = sum(t.state == "PRUNED" for t in summary.trials)
    return {
        "val_accuracy": best.value,
        "test_accuracy": test_accuracy(Path(best.model_uri), dataset, workdir),
        "seconds": seconds,
        "pruned": pruned,
    }


def spread(values: list[float], digits: int = 4) -> str:
    return (
        f"{statistics.median(values):.{digits}f} "
        f"({min(values):.{digits}f}-{max(values):.{digits}f})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    from components.common.results import DatasetInfo
    from components.ingest.run import ingest
    from components.search.gain import gain
    from pipelines.config import load_experiment

    sides: dict[str, list[dict[str, float]]] = {"recipe": [], "search": []}
    # Training logs go to stderr: stdout is the table.
    with tempfile.TemporaryDirectory() as folder, contextlib.redirect_stdout(sys.stderr):
        root = Path(folder)
        dataset = root / "digits"
        ingest(load_experiment("digits").data, dataset, root / "quarantine.csv")
        test_images = DatasetInfo.read(dataset).num_examples["test"]
        recipe(dataset, root / "warm-up", 99)  # TensorFlow start-up and tracing, not measured
        for seed in range(args.repeats):
            sides["recipe"].append(recipe(dataset, root / f"recipe-{seed}", seed))
            sides["search"].append(search(dataset, root / f"search-{seed}", seed, args.trials))
            print(f"repeat {seed + 1}/{args.repeats} done", file=sys.stderr)

    print(
        f"digits: bundled recipe vs a {args.trials}-trial search around it "
        f"(median (min-max) of {args.repeats} alternating repeats)"
    )
    print(f"  {'':16}{'recipe':>26}{'search':>26}")
    for key, label in (("val_accuracy", "best val acc"), ("test_accuracy", "test accuracy")):
        print(
            f"  {label:16}{spread([r[key] for r in sides['recipe']]):>26}"
            f"{spread([r[key] for r in sides['search']]):>26}"
        )
    print(
        f"  {'wall time (s)':16}{spread([r['seconds'] for r in sides['recipe']], 1):>26}"
        f"{spread([r['seconds'] for r in sides['search']], 1):>26}"
    )
    gains = [s["test_accuracy"] - r["test_accuracy"] for r, s in zip(*sides.values(), strict=True)]
    ratios = [s["seconds"] / r["seconds"] for r, s in zip(*sides.values(), strict=True)]
    print(f"  test accuracy, search - recipe: {spread(gains)}")
    print(f"  wall time, search / recipe    : {spread(ratios, 1)}")
    measured = gain(
        {seed: s["test_accuracy"] for seed, s in enumerate(sides["search"])},
        {seed: r["test_accuracy"] for seed, r in enumerate(sides["recipe"])},
        "accuracy",
        True,
        test_images,
    )
    if measured is not None:
        print(f"  {measured.text('accuracy')}")
        print(
            f"  it cost {statistics.median(ratios):.1f}x the recipe's wall time"
            + (" for nothing measurable" if measured.inside_noise else "")
        )
    print(
        f"  trials stopped early (median) : {statistics.median(s['pruned'] for s in sides['search'])}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
