"""Local registry: versioned folders `<registry>/<name>/v<N>/` with the model, card and metrics."""

from __future__ import annotations

import datetime
import os
import re
from pathlib import Path
from typing import Any

from components.common.files import copy_tree, read_json, write_json

RECORD_FILE = "registration.json"


def register_local(model_dir: str | Path, registry_root: str | Path, name: str, metrics: dict[str, Any], aliases: list[str] | None = None) -> dict[str, Any]:
    """Copy the model into the next version folder; the same source model is registered once."""
    model_dir = Path(model_dir)
    if not (model_dir / "model_card.json").is_file():
        raise FileNotFoundError(f"{model_dir} is not a Model artifact (no model_card.json)")
    root = Path(registry_root) / name
    root.mkdir(parents=True, exist_ok=True)
    for existing in versions(root):
        record = read_json(existing / RECORD_FILE)
        if record.get("source_model") == str(model_dir):
            return record
    numbers = [int(p.name[1:]) for p in versions(root)]
    version = f"v{max(numbers, default=0) + 1}"
    target = root / version
    staging = root / f".{version}.partial-{os.getpid()}"
    copy_tree(model_dir, staging / "model")
    record = {
        "name": name,
        "version": version,
        "path": str(target),
        "source_model": str(model_dir),
        "metrics": metrics,
        "aliases": list(aliases or []),
        "registered_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(staging / RECORD_FILE, record)
    staging.rename(target)  # atomic: a version folder is complete or absent
    return record


def versions(root: Path) -> list[Path]:
    return sorted(
        (p for p in root.iterdir() if re.fullmatch(r"v\d+", p.name) and (p / RECORD_FILE).is_file()),
        key=lambda p: int(p.name[1:]),
    )
