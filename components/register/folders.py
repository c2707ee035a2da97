"""The folder registry's layout: `<root>/<name>/v<N>/`, each complete version holding its
record. Read by the register step, the champion check, the model server and the CLIs."""

from __future__ import annotations

import re
from pathlib import Path

RECORD_FILE = "registration.json"
VERSION = re.compile(r"v(\d+)")


def versions(root: Path) -> list[Path]:
    """Complete version folders (those with a record), oldest first."""
    return sorted(
        (p for p in root.iterdir() if VERSION.fullmatch(p.name) and (p / RECORD_FILE).is_file()),
        key=lambda p: int(p.name[1:]),
    )
