"""Helpers the pipeline tests share: reading a compiled spec's parts, the credentials scan."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

# What must never appear in a compiled package or a submitted request.
CREDENTIALS = re.compile(
    r"AKIA[0-9A-Z]{16}"  # AWS access key id
    r"|AIza[0-9A-Za-z_-]{35}"  # Google API key
    r"|ya29\.[0-9A-Za-z_-]+"  # Google OAuth access token
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|\"?private_key(_id)?\"?\s*:"  # service account key JSON
    r"|gh[pousr]_[0-9A-Za-z]{36}"  # GitHub token
    r"|hf_[0-9A-Za-z]{30,}"  # Hugging Face token
    r"|xox[abpr]-[0-9A-Za-z-]{10,}"  # Slack token
    r"|(password|passwd|secret|api[_-]?key|access[_-]?token)\s*[:=]",
    re.IGNORECASE,
)


def container_accelerator(container: dict[str, Any]) -> tuple[str, int] | None:
    """(type, count) of a compiled container's accelerator; KFP versions name the keys
    differently."""
    spec = container.get("resources", {}).get("accelerator")
    if not spec:
        return None
    kind = spec.get("resourceType") or spec.get("type")
    count = spec.get("resourceCount") or spec.get("count")
    return kind, int(count)


@pytest.fixture(scope="session")
def credentials() -> re.Pattern[str]:
    return CREDENTIALS


@pytest.fixture(scope="session")
def accelerator() -> Callable[[dict[str, Any]], tuple[str, int] | None]:
    return container_accelerator
