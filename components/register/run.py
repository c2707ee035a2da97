"""Local registry: versioned folders `<registry>/<name>/v<N>/`.

A version folder holds `model/` (the whole Model artifact), a copy of its `model_card.json`,
`metrics.json` (the registered run's test metrics), `registration.json` (the record) and, when
the experiment exports, `export/`: the formats that passed their accuracy check, `export.json`
and `report.html`; the card copy then lists each exported file with the input it takes. It is
written under a hidden staging name and renamed into place, so a version is complete or absent;
registering the same source model again returns the existing record instead of a new version,
unless this registration brings exported formats that version lacks (an export section added
to the experiment later): then a new version holds the same model with these exports, and its
record names the earlier version (`same_model_as`). A version is never changed once written.

A name keeps its meaning: a version whose class names differ from the latest version's is
refused (register under another name, or pass `allow_class_change`).

With the run's Dataset and a `ChampionPolicy`, a new version is also the challenger of the
model's champion (`components/register/champion.py`): the decision goes into the record
(`details.champion`), and aliases.json moves to the new version only when it is promoted.
"""

from __future__ import annotations

import datetime
import os
import shutil
from pathlib import Path
from typing import Any

from components.common.export_artifact import RECORD_FILE as EXPORT_RECORD
from components.common.export_artifact import REPORT_FILE, VERSION_DIR, ExportRecord
from components.common.files import copy_tree, read_json, write_json
from components.common.model_card import CARD_FILE
from components.common.results import ChampionDecision, RegistrationRecord
from components.register.champion import CHAMPION, MODEL_DIR, decide, set_alias
from components.register.folders import RECORD_FILE, VERSION, versions
from components.spec.champion import ChampionPolicy

METRICS_FILE = "metrics.json"
ATTEMPTS = 5


def register_local(
    model_dir: str | Path,
    registry_root: str | Path,
    name: str,
    metrics: dict[str, Any],
    aliases: list[str] | None = None,
    details: dict[str, Any] | None = None,
    allow_class_change: bool = False,
    export_dir: str | Path | None = None,
    dataset_dir: str | Path | None = None,
    champion: ChampionPolicy | None = None,
) -> RegistrationRecord:
    """Copy the model into the next version folder; the same source model is registered once.

    `details` (e.g. the compare summary's best run and gate) is stored in the record as is.
    `export_dir` (the export step's artifact) adds the formats that passed under `export/`.
    `dataset_dir` (the run's Dataset) and `champion` decide whether the new version becomes
    the champion; without them the champion is left as it is.
    Raises ClassChangeError when the model's class names differ from the latest version's,
    unless `allow_class_change`.
    """
    model_dir = Path(model_dir)
    if not (model_dir / CARD_FILE).is_file():
        raise FileNotFoundError(
            f"{model_dir} is not a Model artifact (no {CARD_FILE}); register the folder the "
            "train step wrote"
        )
    root = Path(registry_root) / name
    root.mkdir(parents=True, exist_ok=True)
    existing = find_registration(root, model_dir)
    if existing is not None and not _new_exports(existing, export_dir):
        return existing.model_copy(update={"existing": True})
    card = read_json(model_dir / CARD_FILE)
    if not allow_class_change:
        check_same_classes(root, name, card.get("class_names"))
    decision = None
    if dataset_dir is not None:
        decision = decide(root, name, model_dir, dataset_dir, champion or ChampionPolicy())
        details = {**(details or {}), "champion": decision.to_output()}
    staging = root / f".staging-{os.getpid()}-{datetime.datetime.now().timestamp():.6f}"
    try:
        copy_tree(model_dir, staging / MODEL_DIR)
        exports = copy_exports(Path(export_dir), staging / VERSION_DIR) if export_dir else []
        if exports:
            write_json(staging / CARD_FILE, {**card, "exports": exports})
        else:
            shutil.copy2(model_dir / CARD_FILE, staging / CARD_FILE)
        write_json(staging / METRICS_FILE, metrics)
        for _ in range(ATTEMPTS):
            version = f"v{next_version_number(root)}"
            target = root / version
            record = RegistrationRecord(
                name=name,
                version=version,
                path=str(target),
                source_model=str(model_dir),
                model_name=card.get("name"),
                seed=card.get("seed"),
                framework=card.get("framework"),
                dataset_fingerprint=card.get("dataset_fingerprint"),
                metrics=metrics,
                exports=[entry["format"] for entry in exports],
                same_model_as=existing.version if existing is not None else None,
                aliases=list(aliases or []),
                details=details or {},
                registered_at=datetime.datetime.now(datetime.timezone.utc).isoformat(
                    timespec="seconds"
                ),
            )
            write_json(staging / RECORD_FILE, record.model_dump(mode="json"))
            try:
                # atomic: a version folder is complete or absent. Renaming onto an existing
                # non-empty folder fails, so two registrations never share a version.
                staging.rename(target)
            except OSError:
                if not target.exists():
                    raise
                continue
            if decision is not None and decision.promoted:
                set_alias(root, CHAMPION, version)
            return record
        raise RuntimeError(
            f"could not claim a new version under {root} after {ATTEMPTS} attempts: other "
            "registrations keep taking the next number; retry"
        )
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


class ClassChangeError(ValueError):
    """A new version would change what the registered model's outputs mean."""


def check_same_classes(root: Path, name: str, class_names: list[str] | None) -> None:
    """Refuse a version whose class names (and their order) differ from the latest version's."""
    existing = versions(root)
    if not existing:
        return
    latest = existing[-1]
    card_path = latest / CARD_FILE
    before = read_json(card_path).get("class_names") if card_path.is_file() else None
    problem = class_change(name, latest.name, before, class_names)
    if problem:
        raise ClassChangeError(problem)


def class_change(
    name: str, version: str, before: list[str] | None, class_names: list[str] | None
) -> str | None:
    """Why a version with `class_names` may not follow `version` (whose classes are
    `before`) under `name`, or None when the classes are the same (or `before` unknown)."""
    if before is None or list(before) == list(class_names or []):
        return None
    now = list(class_names or [])
    added, removed = sorted(set(now) - set(before)), sorted(set(before) - set(now))
    change = "; ".join(
        part
        for part in (
            f"new: {', '.join(added)}" if added else "",
            f"gone: {', '.join(removed)}" if removed else "",
            "same names in another order" if not added and not removed else "",
        )
        if part
    )
    return (
        f"model '{name}' {version} predicts {len(before)} classes and this model "
        f"{len(now)} ({change}); its versions would mean different things. Register it under "
        "another name (register.name) or set register.allow_class_change: true"
    )


def find_registration(root: Path, model_dir: str | Path) -> RegistrationRecord | None:
    """The record of the latest version of `model_dir` if it is already registered under `root`."""
    for version in reversed(versions(root)):
        record = read_record(version)
        if record.source_model == str(model_dir):
            return record
    return None


def passed_formats(export_dir: str | Path) -> list[str]:
    """The formats the export step's record lists as passed (what registering would copy)."""
    return ExportRecord.read(export_dir).passed


def _new_exports(existing: RegistrationRecord, export_dir: str | Path | None) -> list[str]:
    """Formats this registration exports that the existing version of the model lacks."""
    if export_dir is None:
        return []
    return [f for f in passed_formats(export_dir) if f not in existing.exports]


def champion_decision(record: RegistrationRecord) -> ChampionDecision | None:
    """The champion decision a record holds (None: registered without one)."""
    found = record.details.get("champion")
    return ChampionDecision.model_validate(found) if found else None


def read_record(version: Path) -> RegistrationRecord:
    """The registration record of a version folder."""
    return RegistrationRecord.model_validate(read_json(version / RECORD_FILE))


def next_version_number(root: Path) -> int:
    # Every vN folder counts, complete or not, so a number is never reused.
    numbers = [int(m.group(1)) for p in root.iterdir() if (m := VERSION.fullmatch(p.name))]
    return max(numbers, default=0) + 1


def copy_exports(export_dir: Path, destination: Path) -> list[dict[str, Any]]:
    """Copy the passing formats, the export record and report; the card's `exports` entries.

    Only the formats the record lists as passed are copied, so a format over its accuracy
    budget is never registered even if its file were present.
    """
    record = ExportRecord.read(export_dir)
    destination.mkdir(parents=True, exist_ok=True)
    entries = []
    for row in record.exported:
        if not row.passed:
            continue
        assert row.file is not None  # every exported format's row names its file
        source = export_dir / row.file
        if source.is_dir():
            copy_tree(source, destination / row.file)
        else:
            shutil.copy2(source, destination / row.file)
        entries.append(
            {
                "format": row.format,
                "file": f"{VERSION_DIR}/{row.file}",
                "runtime": row.runtime,
                "precision": row.precision,
                "input": record.input,
                "input_size": record.input_size,
                "channels": record.channels,
                "accuracy": row.accuracy,
                "accuracy_delta": row.accuracy_delta,
                "size_bytes": row.size_bytes,
            }
        )
    for name in (EXPORT_RECORD, REPORT_FILE):
        shutil.copy2(export_dir / name, destination / name)
    return entries
