"""The table of source kinds: every kind answers every question, a bad source string says what
is allowed, and a kind added to the table is found by ingest, the data preflight, the class
count and the data snapshot with no other edit."""

from __future__ import annotations

import inspect
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from components.ingest import sources
from components.ingest.classes import known_class_names
from components.ingest.preflight import preflight
from components.ingest.run import ingest
from components.ingest.snapshot import take_snapshot
from components.ingest.sources import KINDS, check_source, kind_of, open_source, resolve_relative
from components.ingest.sources.base import Item, SnapshotContext, Source, SourceKind, given
from components.ingest.sources.listing import Listings, SourceError
from components.spec import DataConfig

# Every question a kind answers (components/ingest/sources/base.py).
QUESTIONS = (
    "check",
    "resolve_relative",
    "host_paths",
    "visible",
    "open",
    "listed_classes",
    "class_names",
    "snapshot",
)


@pytest.mark.parametrize("scheme", list(KINDS))
def test_every_kind_answers_every_question(scheme: str, tmp_path: Path) -> None:
    kind = KINDS[scheme]
    assert isinstance(kind, SourceKind) and not inspect.isabstract(type(kind))
    assert kind.scheme == scheme
    for question in QUESTIONS:
        asked = inspect.signature(getattr(SourceKind, question))
        answered = inspect.signature(getattr(type(kind), question))
        assert list(answered.parameters) == list(asked.parameters), (scheme, question)
    # The example the error message shows is a source the kind reads.
    assert kind_of(kind.example) == (kind, kind.example.partition(":")[2])
    rest = kind.example.partition(":")[2]
    data = DataConfig(source="sklearn:digits")
    assert isinstance(kind.resolve_relative(rest, tmp_path), str)
    assert all(isinstance(path, str) for path in kind.host_paths(rest, data))
    assert kind.visible(rest, ()) == rest  # nothing is elsewhere when nothing is named


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("s3://bucket/images", "'s3://bucket/images' is not a data source; use one of sklearn:..."),
        ("tfds:", "'tfds:' is not a data source"),
        ("folder", "'folder' is not a data source"),
        ("sklearn:iris", "sklearn:iris is not embedded; available: digits"),
    ],
)
def test_a_bad_source_says_what_is_allowed(source: str, expected: str) -> None:
    with pytest.raises(SourceError) as caught:
        check_source(source)
    assert expected in str(caught.value)
    if "not a data source" in expected:
        assert all(f"{scheme}:..." in str(caught.value) for scheme in KINDS)


def test_relative_paths_are_read_from_the_experiment_folder(tmp_path: Path) -> None:
    assert resolve_relative("folder:images", tmp_path) == f"folder:{tmp_path / 'images'}"
    assert (
        resolve_relative("csv:../labels.csv", tmp_path) == f"csv:{tmp_path.parent / 'labels.csv'}"
    )
    assert resolve_relative("npz:/data/x.npz", tmp_path) == "npz:/data/x.npz"
    assert resolve_relative("folder:gs://bucket/pets", tmp_path) == "folder:gs://bucket/pets"
    # Not paths: a Hub id, a builder name, a string no kind reads.
    for source in ("hf:owner/name", "tfds:mnist", "sklearn:digits", "s3://x", "folder:"):
        assert resolve_relative(source, tmp_path) == source


def test_a_gcs_mount_is_listed_as_the_bucket_and_other_remote_paths_are_not_listed() -> None:
    assert KINDS["folder"].visible("/gcs/bucket/pets", ("/gcs/",)) == "gs://bucket/pets"
    assert KINDS["csv"].visible("/gcs/bucket/labels.csv", ("/gcs/",)) is None
    assert KINDS["npz"].visible("/mnt/data/x.npz", ("/mnt/data",)) is None


def test_the_table_imports_no_heavy_library() -> None:
    heavy = ("tensorflow", "tensorflow_datasets", "datasets", "sklearn", "PIL", "numpy")
    code = (
        f"import sys, components.ingest.sources; print([m for m in {heavy!r} if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# --- a kind added to the table --------------------------------------------------------------


class StripesKind(SourceKind):
    """`stripes:N`: N striped 16x16 images of each of two classes, made up in memory."""

    scheme = "stripes"
    example = "stripes:12"

    def check(self, rest: str) -> None:
        if not rest.isdigit():
            raise SourceError(f"stripes:{rest}: give a number of images per class")

    def open(self, rest: str, config: Any) -> Source:
        count = int(rest)

        def items() -> Iterator[Item]:
            for label, axis in (("rows", 0), ("columns", 1)):
                for index in range(count):
                    image = np.zeros((16, 16, 1), np.uint8)
                    if axis == 0:
                        image[index % 16 :: 4, :] = 255
                    else:
                        image[:, index % 16 :: 4] = 255
                    yield Item(
                        key=f"{label}/{index}",
                        label=label,
                        read=partial(given, image),
                        origin=f"stripes:{label}/{index}",
                    )

        return Source(items(), 2 * count)

    def listed_classes(
        self, rest: str, data: DataConfig, not_here: tuple[str, ...], listings: Listings
    ) -> set[str] | None:
        return {"rows", "columns"}

    def snapshot(self, rest: str, context: SnapshotContext) -> int | None:
        context.digest.update(f"stripes\0{rest}\n".encode())
        return None


@pytest.fixture
def stripes(monkeypatch: pytest.MonkeyPatch) -> DataConfig:
    monkeypatch.setattr(sources, "KINDS", {**KINDS, "stripes": StripesKind()})
    base = DataConfig(source="sklearn:digits", image_size=(16, 16), channels=1)
    return base.model_copy(update={"source": "stripes:12"})


def test_an_unregistered_kind_is_not_a_source() -> None:
    with pytest.raises(SourceError, match="'stripes:12' is not a data source"):
        check_source("stripes:12")


def test_a_registered_kind_is_found_by_every_reader(stripes: DataConfig, tmp_path: Path) -> None:
    assert check_source("stripes:12") == "stripes:12"
    with pytest.raises(SourceError, match="give a number"):
        check_source("stripes:many")
    assert len(list(open_source("stripes:12", stripes))) == 24

    assert preflight(stripes) == []
    wrong = stripes.model_copy(update={"classes": ["rows", "diagonals"]})
    assert any("'diagonals'" in problem for problem in preflight(wrong))

    assert known_class_names(stripes) == ["columns", "rows"]

    first = take_snapshot(stripes)
    assert first.files is None
    changed = take_snapshot(stripes.model_copy(update={"source": "stripes:13"}))
    assert changed.digest != first.digest

    info = ingest(stripes, tmp_path / "dataset", tmp_path / "quarantine.csv", workers=1)
    assert info["class_names"] == ["columns", "rows"]
    assert sum(sum(split.values()) for split in info["counts"].values()) == 24


def test_the_bucket_mount_is_one_rule_both_ways():
    from components.common.files import local_path, mounted_uri

    assert str(local_path("gs://bucket/pets")) == "/gcs/bucket/pets"
    assert mounted_uri("/gcs/bucket/pets") == "gs://bucket/pets"
    assert mounted_uri(str(local_path("gs://b/x/y"))) == "gs://b/x/y"
    assert mounted_uri("/data/pets") is None
    assert mounted_uri("/gcsx/bucket") is None
    kind = KINDS["folder"]
    assert kind.visible("/gcs/bucket/pets", ("/gcs/",)) == "gs://bucket/pets"
    assert kind.visible("/gcs/bucket/pets", ()) == "/gcs/bucket/pets"
