"""Data sources: the table of source kinds, one per `data.source` scheme.

`data.source` (and each of `data.extra_train_sources`) is `SCHEME:REST`; the kind of each scheme
(one module beside this one, one object) answers every question asked of a source: whether
REST is one it reads, the local paths it names, its items, its classes before ingest and its
data snapshot (components/ingest/sources/base.py says what each question means). The data
preflight, the snapshot, the class count, ingest and the experiment's validation ask `KINDS`,
so adding a source is one new module and one line here.

The kinds' modules import their heavy libraries inside their methods: this table is imported
by the command line, which must stay fast and never imports TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components.ingest.sources.base import Source, SourceKind
from components.ingest.sources.csv import CsvKind
from components.ingest.sources.folder import FolderKind
from components.ingest.sources.hf import HfKind
from components.ingest.sources.listing import SourceError
from components.ingest.sources.npz import NpzKind
from components.ingest.sources.sklearn import SklearnKind
from components.ingest.sources.tfds import TfdsKind

# Scheme -> kind, in the order the error for an unknown source lists them.
KINDS: dict[str, SourceKind] = {
    kind.scheme: kind
    for kind in (
        SklearnKind(),
        FolderKind(),
        CsvKind(),
        NpzKind(),
        TfdsKind(),
        HfKind(),
    )
}


def kind_of(source: str) -> tuple[SourceKind, str]:
    """(the kind, the part after its scheme) of a source string the kind reads; SourceError
    (a ValueError, so pydantic validators may raise it) saying what is allowed, otherwise."""
    scheme, sep, rest = source.partition(":")
    kind = KINDS.get(scheme)
    if kind is None or not sep or not rest:
        raise SourceError(
            f"'{source}' is not a data source; use one of "
            + ", ".join(f"{s}:..." for s in KINDS)
            + f" (e.g. {', '.join(k.example for k in KINDS.values())})"
        )
    kind.check(rest)
    return kind, rest


def check_source(source: str) -> str:
    """`source`, when a kind reads it; SourceError saying what is allowed, otherwise."""
    kind_of(source)
    return source


def open_source(source: str, config: Any) -> Source:
    """Open `source` (errors in the source string or its layout are raised here, not later)."""
    kind, rest = kind_of(source)
    return kind.open(rest, config)


def resolve_relative(source: str, folder: Path) -> str:
    """`source` with a relative local path read from `folder` (an experiment file's folder);
    any other string as it is (a bad one is reported by `check_source`)."""
    scheme, sep, rest = source.partition(":")
    kind = KINDS.get(scheme)
    if kind is None or not sep or not rest:
        return source
    return f"{scheme}:{kind.resolve_relative(rest, folder)}"
