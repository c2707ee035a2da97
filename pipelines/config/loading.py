"""Loading an experiment: a bundled name or a YAML path, the file's relative data paths,
`--set` overrides and the tracking URI from the environment, then one validation."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from components.ingest.sources import resolve_relative
from pipelines.config.errors import format_validation_error
from pipelines.config.overrides import apply_override
from pipelines.config.schema import MLFLOW_URI_ENV, Experiment
from pipelines.experiment_file import (
    ConfigError,
    did_you_mean,
    parse_yaml,
    read_experiment_text,
)

EXPERIMENTS_DIR = Path(__file__).parent.parent / "experiments"
# Sources whose relative paths are read from the experiment file's folder.


def list_experiments() -> dict[str, str]:
    """Name -> one-line description of every bundled experiment."""
    result = {}
    for path in sorted(EXPERIMENTS_DIR.glob("*.yaml")):
        raw = yaml.safe_load(path.read_text()) or {}
        result[path.stem] = str(raw.get("description", "")).strip()
    return result


def resolve_experiment_path(experiment: str) -> Path:
    path = Path(experiment)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"experiment file {experiment} does not exist")
        return path
    bundled = EXPERIMENTS_DIR / f"{experiment}.yaml"
    if not bundled.is_file():
        names = list(list_experiments())
        raise ConfigError(
            f"unknown experiment '{experiment}';{did_you_mean(experiment, names)} use a YAML "
            f"path or one of: {', '.join(names)}"
        )
    return bundled


def resolve_source_paths(raw: dict[str, Any], folder: Path) -> None:
    """Relative local paths of the file's data sources -> paths from `folder` (each source's
    kind says which of its strings are paths)."""
    data = raw.get("data")
    if not isinstance(data, dict):
        return

    def resolved(source: Any) -> Any:
        return resolve_relative(source, folder) if isinstance(source, str) else source

    if "source" in data:
        data["source"] = resolved(data["source"])
    extras = data.get("extra_train_sources")
    if isinstance(extras, list):
        data["extra_train_sources"] = [resolved(s) for s in extras]


def default_tracking_uri(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    """`tracking.mlflow` from MLFLOW_TRACKING_URI when the experiment (and --set) leave it unset."""
    uri = environ.get(MLFLOW_URI_ENV)
    tracking = raw.get("tracking")
    if not uri or (tracking is not None and not isinstance(tracking, dict)):
        return
    if tracking is None or tracking.get("mlflow") is None:
        raw["tracking"] = {**(tracking or {}), "mlflow": uri}


def load_experiment(experiment: str, overrides: list[str] | tuple[str, ...] = ()) -> Experiment:
    """Load a bundled experiment by name (or a YAML path), apply `--set` overrides, validate.

    In an experiment given as a file, a data source's relative local path is read from the
    file's folder; a `--set` path is read from the working directory.
    """
    path = resolve_experiment_path(experiment)
    raw = parse_yaml(read_experiment_text(path), str(path))
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: the experiment must be a YAML mapping, got {type(raw).__name__}"
        )
    if path.parent.resolve() != EXPERIMENTS_DIR.resolve():
        resolve_source_paths(raw, path.parent.resolve())
    # Names are slugs of at most 40 characters; a long file name must not make an invalid one.
    default_name = re.sub(r"[^a-z0-9-]+", "-", path.stem.lower()).strip("-")[:40].strip("-")
    raw.setdefault("name", default_name or "experiment")
    paths = {override: apply_override(raw, override) for override in overrides}
    default_tracking_uri(raw, os.environ)
    try:
        return Experiment.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path), paths)) from None
    except RecursionError:
        raise ConfigError(
            f"{path}: nested too deeply; an experiment is a few levels deep"
        ) from None
