"""The source a pipeline is compiled from: its git commit, a label of every run and a tag of
every tracked run."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

# The repository root: where `git rev-parse` reads the commit the pipeline is compiled from.
SOURCE_DIR = Path(__file__).resolve().parents[1]


def git_commit(folder: Path) -> tuple[str | None, bool]:
    """(HEAD commit, whether tracked files have uncommitted changes) of the repository holding
    `folder`; (None, False) outside a repository or without git."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=folder, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit or not re.fullmatch(r"[0-9a-f]{40}", commit):
        return None, False
    return commit, bool(git("status", "--porcelain", "--untracked-files=no"))
