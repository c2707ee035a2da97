"""The Optuna study of a searched candidate on a private copy of its journal, with the sampler of
a round, and what the journal tells of its rounds (the round a trial was asked in, the time the
trained rounds took).
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from components.spec import Distribution, ModelSpec, Study

JOURNAL_FILE = "journal.log"
# Trial user attributes: the round a trial was asked in; why a trial was left untrained.
ROUND_ATTR = "round"
SKIPPED_ATTR = "skipped"


def distribution(spec: Distribution) -> Any:
    """The Optuna distribution of one `space` entry."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if spec.log_uniform is not None:
        return FloatDistribution(*spec.log_uniform, log=True)
    if spec.uniform is not None:
        return FloatDistribution(*spec.uniform)
    if spec.int_range is not None:
        return IntDistribution(*spec.int_range)
    assert spec.choice is not None
    return CategoricalDistribution(spec.choice)


def sampler(search: Study, seed: int, finished: int) -> Any:
    """The sampler of one suggest task. It is re-created in every task, so its seed also counts
    the trials already in the study: each round draws new points, and a rerun the same ones."""
    import optuna

    round_seed = seed * 1_000_003 + finished
    if search.algorithm == "random":
        return optuna.samplers.RandomSampler(seed=round_seed)
    if search.algorithm == "grid":
        # The seed shuffles the grid, and grid points are numbered in that order: it must not
        # change between rounds, or a round would revisit points under new numbers.
        return optuna.samplers.GridSampler(
            {path: d.choice or [] for path, d in search.space.items()}, seed=seed
        )
    # TPE after one round of random points; the constant liar keeps a round's trials apart.
    return optuna.samplers.TPESampler(
        seed=round_seed,
        n_startup_trials=search.parallel_trials,
        multivariate=True,
        constant_liar=True,
    )


@contextmanager
def study_copy(
    journal_in: str | Path | None,
    journal_out: str | Path,
    spec: ModelSpec,
    config: Study,
    seed: int,
    asking: bool = True,
) -> Iterator[Any]:
    """Open the study of candidate `spec` from `journal_in` (None: a new study, whose sampler
    seed is `seed`) on a private copy; on a clean exit, write the journal to `journal_out`.
    Only `asking` opens it with the configured sampler: telling needs none, and GridSampler's
    after-trial hook would stop the study, which Optuna allows only inside `optimize`."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="study-") as work:
        journal = Path(work) / JOURNAL_FILE
        if journal_in is not None:
            source = Path(journal_in) / JOURNAL_FILE
            if not source.is_file():
                raise FileNotFoundError(
                    f"{journal_in} holds no {JOURNAL_FILE}: it is not a study written by the "
                    "suggest or tell step"
                )
            shutil.copyfile(source, journal)
        from optuna.storages.journal import JournalFileBackend

        storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
        finished = 0
        if journal_in is not None:
            existing = optuna.load_study(study_name=spec.name, storage=storage)
            finished = len(existing.get_trials(deepcopy=False))
            seed = int(existing.user_attrs["seed"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study = optuna.create_study(
                study_name=spec.name,
                storage=storage,
                direction=config.direction,
                sampler=(
                    sampler(config, seed, finished)
                    if asking
                    else optuna.samplers.RandomSampler(seed=seed)
                ),
                load_if_exists=True,
            )
        if journal_in is None:
            study.set_user_attr("model_spec", base_spec(spec))
            study.set_user_attr(
                "study", config.model_dump(mode="json", by_alias=True, exclude_none=True)
            )
            study.set_user_attr("seed", seed)
        yield study
        out = Path(journal_out)
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(journal, out / JOURNAL_FILE)


def base_spec(spec: ModelSpec) -> dict[str, Any]:
    """The candidate's own recipe, without its search section: what every trial starts from."""
    return spec.model_dump(mode="json", exclude={"search"}, exclude_none=True)


def rounds_so_far(study: Any) -> dict[int, list[Any]]:
    """The study's trials by the round they were asked in."""
    rounds: dict[int, list[Any]] = {}
    for trial in study.get_trials(deepcopy=False):
        rounds.setdefault(int(trial.user_attrs.get(ROUND_ATTR, 0)), []).append(trial)
    return rounds


def spent_minutes(study: Any) -> float:
    """Wall time of the study's trained rounds: each from its first ask to its last tell (the
    times Optuna keeps in the journal, so a replayed round counts what it took then)."""
    total = 0.0
    for trials in rounds_so_far(study).values():
        trained = [t for t in trials if SKIPPED_ATTR not in t.user_attrs]
        starts = [t.datetime_start for t in trained if t.datetime_start is not None]
        ends = [t.datetime_complete for t in trained if t.datetime_complete is not None]
        if starts and ends:
            total += max((max(ends) - min(starts)).total_seconds(), 0.0) / 60
    return total
