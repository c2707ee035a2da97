"""Reading an experiment file (or a `--set` value) as YAML, safely, whatever the bytes are.

An experiment is a short UTF-8 YAML mapping. Anything else ends in a ConfigError that says what
to fix, never a traceback, a hang or a memory blow-up: files over MAX_FILE_BYTES, binary or
UTF-16 / Latin-1 files, duplicate keys (YAML's "last one wins" would drop a whole `models:`
list unseen), aliases that expand past ALIAS_BUDGET nodes ("billion laughs") or refer to
themselves, and nesting deeper than the parser can follow.
"""

from __future__ import annotations

import codecs
import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

MAX_FILE_BYTES = 1_000_000  # the bundled experiments are about 2 KB
# Nodes that aliases may add to a document beyond the nodes written out; an experiment that
# reuses a block (`augment: *strong`) adds a few dozen.
ALIAS_BUDGET = 10_000
QUOTE_CHARS = 80  # a value quoted in a message is cut to this many characters


class ConfigError(ValueError):
    """A bad experiment file or override; the message says what to fix."""


def clip(text: str, limit: int = QUOTE_CHARS) -> str:
    """`text`, or its first `limit` characters and how long it really is."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """` did you mean 'x'?` naming the choice closest to `word`, or "" when none is close."""
    close = difflib.get_close_matches(word.lower(), list(choices), n=1, cutoff=0.6)
    return f" did you mean '{close[0]}'?" if close else ""


def read_experiment_text(path: Path) -> str:
    """The text of an experiment file; ConfigError when it is too big or not UTF-8 text."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(
            f"{path}: larger than {MAX_FILE_BYTES:,} bytes; an experiment file states only what "
            "differs from the defaults (a few KB): is this the right file?"
        )
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE)):
        raise ConfigError(f"{path}: is UTF-16/UTF-32 text; save it as UTF-8")
    if b"\0" in data:
        raise ConfigError(
            f"{path}: is not a text file (it holds NUL bytes); an experiment is a YAML text file"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: is not UTF-8 text (byte {data[exc.start]:#04x} on line {line}, perhaps "
            "Latin-1 or Windows-1252); save the file as UTF-8"
        ) from None


def parse_yaml(text: str, source: str) -> Any:
    """The YAML document in `text`; ConfigError (naming `source`) for anything unsafe or invalid."""
    loader = None
    try:
        loader = _StrictLoader(text, source)  # its reader refuses control characters here
        node = loader.get_single_node()
        if node is None:
            return None
        _check_aliases(node, source)
        return loader.construct_document(node)
    except RecursionError:
        raise ConfigError(
            f"{source}: nested too deeply for the YAML parser; an experiment is a few levels deep"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {clip(str(exc), 400)}") from None
    finally:
        if loader is not None:
            loader.dispose()


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses duplicate keys."""

    def __init__(self, text: str, source: str):
        super().__init__(text)
        self.source = source

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` then a key of its own overrides the base, as meant
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = lines.get(key)
            except TypeError:
                continue  # an unhashable key: the base class says so
            if first is not None:
                raise ConfigError(
                    f"{self.source}: duplicate key '{clip(str(key))}' on lines {first} and "
                    f"{line}; YAML would keep only the last one: merge them or delete one"
                )
            lines[key] = line
        return super().construct_mapping(node, deep=deep)


def _check_aliases(root: yaml.Node, source: str) -> None:
    """Refuse aliases that expand past ALIAS_BUDGET nodes, or that contain themselves."""
    expanded: dict[int, int] = {}  # id(node) -> nodes it stands for, aliases expanded
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        children = _children(node)
        if children_done:
            expanded[id(node)] = 1 + sum(expanded[id(c)] for c in children)
            open_nodes.discard(id(node))
            continue
        if id(node) in expanded:
            continue
        if id(node) in open_nodes:
            raise _recursive(node, source)
        open_nodes.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in open_nodes:
                raise _recursive(child, source)
            if id(child) not in expanded:
                stack.append((child, False))
    added = expanded[id(root)] - len(expanded)
    if added > ALIAS_BUDGET:
        raise ConfigError(
            f"{source}: its aliases (*name) expand to {expanded[id(root)]:,} values, "
            f"{added:,} more than written (at most {ALIAS_BUDGET:,}); write the values out "
            "or reuse fewer anchors"
        )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _recursive(node: yaml.Node, source: str) -> ConfigError:
    return ConfigError(
        f"{source}: line {node.start_mark.line + 1}: an alias refers to the value it is part "
        "of (a recursive structure); an experiment cannot hold one"
    )
