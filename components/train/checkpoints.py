"""Where a training run keeps its checkpoints: a pure function of what determines its result.

`<root>/<candidate>-seed<k>-<key>/`, where `root` is per experiment (locally
`runs/<experiment>/checkpoints`, on the cluster targets under the pipeline root) and `key` hashes
the dataset fingerprint and the candidate's whole recipe. The folder lives outside any run's own
folder, so a rerun of an interrupted command (a new run, a retry, `--no-cache`) finds it and
resumes; a changed recipe or dataset gets a folder of its own. A finished run leaves its folder
in place: a rerun then only writes the outputs again. `fresh` empties it first.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from components.spec import Fold, ModelSpec

KEY_DIGITS = 12


def run_key(
    spec: ModelSpec, seed: int, dataset_fingerprint: str | None, fold: Fold | None = None
) -> str:
    """Hash of what decides the result: recipe (the whole spec), seed, dataset content and,
    for a search trial's fold, the fold."""
    identity: dict[str, Any] = {
        "spec": spec.model_dump(mode="json"),
        "seed": int(seed),
        "dataset": dataset_fingerprint or "",
    }
    if fold is not None:  # without one, the key of every earlier run stays the same
        identity["fold"] = fold.model_dump()
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_DIGITS]


def checkpoint_dir(
    root: str | Path,
    spec: ModelSpec,
    seed: int,
    dataset_fingerprint: str | None,
    fresh: bool = False,
    fold: Fold | None = None,
) -> Path:
    """The run's checkpoint folder under `root` (created); emptied first when `fresh`."""
    key = run_key(spec, seed, dataset_fingerprint, fold)
    folder = Path(root) / f"{spec.name}-seed{int(seed)}-{key}"
    if fresh and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def resume_message(name: str, seed: int, epochs_done: int, epochs: int) -> str:
    """What a resumed training prints: `resuming small-cnn seed 0 at epoch 6/40`."""
    if epochs_done >= epochs:
        return f"resuming {name} seed {seed}: training had finished ({epochs_done}/{epochs} epochs)"
    return f"resuming {name} seed {seed} at epoch {epochs_done + 1}/{epochs}"
