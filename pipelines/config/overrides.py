"""`--set KEY=VALUE`: one field of the experiment, set before it is validated."""

from __future__ import annotations

import re
from typing import Any

from pipelines.experiment_file import ConfigError, clip, parse_yaml


def parse_override(override: str) -> tuple[list[str | int], Any]:
    """`a.b.0.c=value` -> (['a', 'b', 0, 'c'], parsed YAML scalar)."""
    key, sep, raw = override.partition("=")
    shown = f"--set {clip(override)!r}"
    if not sep or not key.strip():
        raise ConfigError(f"{shown}: expected KEY=VALUE, e.g. --set models.0.epochs=1")
    parts: list[str | int] = []
    for part in key.strip().split("."):
        if not part:
            raise ConfigError(f"{shown}: empty component in key '{clip(key)}'")
        parts.append(int(part) if re.fullmatch(r"\d+", part) else part)
    value = parse_yaml(raw, shown) if raw.strip() else ""
    return parts, value


def apply_override(raw: dict[str, Any], override: str) -> list[str | int]:
    """Set the field `override` names in `raw`; return its path."""
    path, value = parse_override(override)
    shown = f"--set {clip(override)!r}"
    node: Any = raw
    for depth, part in enumerate(path[:-1]):
        here = ".".join(str(p) for p in path[: depth + 1])
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                size = len(node) if isinstance(node, list) else 0
                raise ConfigError(f"{shown}: '{here}' is out of range (the list has {size} items)")
            node = node[part]
        else:
            if not isinstance(node, dict):
                raise ConfigError(f"{shown}: '{here}' is not a mapping")
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last > len(node):
            raise ConfigError(f"{shown}: index {last} is out of range")
        if last == len(node):
            node.append(value)
        else:
            node[last] = value
    else:
        if not isinstance(node, dict):
            raise ConfigError(f"{shown}: cannot set '{last}' on a non-mapping")
        node[last] = value
    return path
