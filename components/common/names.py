"""Names people read in a run's results folder: one rule, used by the steps that link to each
other's reports and by the local target that lays the folder out."""

from __future__ import annotations

import re

DATA_REPORT = "data.html"
COMPARISON_REPORT = "comparison.html"
EXPORT_REPORT = "export.html"
INDEX = "index.html"
# A training task's TensorBoard event files, beside its model (outside Vertex AI).
TENSORBOARD_DIR = "tensorboard"


def run_name(
    candidate: str, seed: int | None, trial: int | None = None, fold: int | None = None
) -> str:
    """One training of the experiment: `small-cnn-seed1`; a search trial (Optuna's number
    `trial`, counted from 1 as people count): `small-cnn-trial3`; one fold of it (search.folds,
    `fold` from 0, counted from 1): `small-cnn-trial3-fold2`."""
    if trial is not None:
        name = f"{candidate}-trial{int(trial) + 1}"
        return name + (f"-fold{int(fold) + 1}" if fold is not None else "")
    if seed is None:
        raise ValueError(f"a training of {candidate} needs a seed or a trial number")
    return f"{candidate}-seed{int(seed)}"


def curves_report(
    candidate: str, seed: int, trial: int | None = None, fold: int | None = None
) -> str:
    return f"curves-{run_name(candidate, seed, trial, fold)}.html"


def evaluation_report(candidate: str, seed: int) -> str:
    return f"evaluation-{run_name(candidate, seed)}.html"


def task_slug(
    step: str,
    candidate: str | None = None,
    seed: int | None = None,
    trial: int | None = None,
    fold: int | None = None,
) -> str:
    """A file-name-safe name of one task: `train-small-cnn-seed1`, `search-small-cnn-trial3`,
    `best-model`."""
    name = step if candidate is None else f"{step}-{candidate}"
    if candidate is not None and (seed is not None or trial is not None):
        name = f"{step}-{run_name(candidate, seed, trial, fold)}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")
