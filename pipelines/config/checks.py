"""What validating the experiment cannot tell: checks the CLI makes before compiling, against
the files on this machine and the class count of the data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components.spec import metric_unavailable
from pipelines.config.schema import Experiment
from pipelines.experiment_file import ConfigError


def weights_problems(experiment: Experiment, not_here: tuple[str, ...] = ()) -> list[str]:
    """Local `models[].weights` files that do not exist (checked before compiling; a path
    below `not_here` exists only where the steps run, a gs:// URI only in the bucket)."""
    problems = []
    for index, model in enumerate(experiment.models):
        weights = model.weights
        if model.framework != "keras" or weights in ("none", "imagenet") or "://" in weights:
            continue
        if weights.startswith(not_here):
            continue
        path = Path(weights).expanduser()
        if not path.is_file():
            what = "is a folder, not a weights file" if path.is_dir() else "does not exist"
            problems.append(
                f"models.{index}.weights: {weights} {what} (model '{model.name}'); give an "
                f"existing keras weights file (--set models.{index}.weights=PATH), or "
                f"--set models.{index}.weights=imagenet|none"
            )
    return problems


def check_metrics(
    experiment: Experiment, not_here: tuple[str, ...] = (), listings: Any = None
) -> int | None:
    """Refuse a gate (or reference) metric the evaluations of this experiment cannot compute.

    Uses the class count when it is knowable before ingest (components/ingest/classes.py);
    returns that count, or None when only ingest can tell (compare then says so). `listings`:
    the data preflight's listings of the sources (components.ingest.sources.listing.Listings).
    """
    from components.ingest.classes import known_class_count

    num_classes = known_class_count(experiment.data, not_here, listings)
    if num_classes is None:
        return None
    checked = [("gate.metric", experiment.gate.metric)]
    if experiment.reference is not None:
        checked.append(("reference.metric", experiment.reference.metric))
    for field, metric in checked:
        why = metric_unavailable(metric, num_classes)
        if why:
            raise ConfigError(f"{field}: {why} (data: {experiment.data.source})")
    return num_classes
