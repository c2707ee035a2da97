"""Where a restarted Keras training picks up, read from its checkpoint folder.

Each phase backs up into `<checkpoints>/<phase>/backup/` every epoch (Keras' BackupAndRestore,
whose `training_metadata.json` counts the finished epochs); a finished phase leaves
`<checkpoints>/<phase>.done.weights.h5`.
"""

from __future__ import annotations

import json
from pathlib import Path

from components.train.checkpoints import resume_message


def done_marker(checkpoints: Path, phase: str) -> Path:
    return checkpoints / f"{phase}.done.weights.h5"


def epochs_backed_up(phase_dir: Path) -> int:
    """Epochs of a phase that BackupAndRestore saved, else 0."""
    metadata = phase_dir / "backup" / "training_metadata.json"
    if not metadata.is_file():
        return 0
    return int(json.loads(metadata.read_text())["epoch"])


def epochs_done(checkpoints: Path, phases: list[tuple[str, int, float]]) -> int:
    """Finished epochs over all phases, as a restart finds them."""
    done = 0
    for phase, epochs, _ in phases:
        if done_marker(checkpoints, phase).is_file():
            done += epochs
            continue
        return done + epochs_backed_up(checkpoints / phase)
    return done


def announce_resume(
    name: str, seed: int, checkpoints: Path, phases: list[tuple[str, int, float]]
) -> int:
    """Print where a restarted training picks up (nothing on a first start); return the
    epochs it finds finished."""
    done = epochs_done(checkpoints, phases)
    if done:
        print(resume_message(name, seed, done, sum(e for _, e, _ in phases)), flush=True)
    return done
