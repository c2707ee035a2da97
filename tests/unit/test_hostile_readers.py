"""Every reader of a source against every hostile tree (conftest's HOSTILE_TREES).

A reader either handles the case or raises the project's user error (exit 2 material, one
message that says what to fix); nothing ends in a traceback or hangs. A new reader of a source
belongs in READERS, so that a case fixed in one reader cannot come back through another.
"""

from __future__ import annotations

import csv
import faulthandler
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from components.ingest.classes import known_class_count
from components.ingest.preflight import preflight
from components.ingest.run import IngestError, ingest
from components.ingest.snapshot import take_snapshot
from components.ingest.sources.hashing import SnapshotError
from components.ingest.sources.listing import SourceError
from components.predict.cli import main as predict_main
from components.spec import DataConfig

USER_ERRORS = (SourceError, SnapshotError, IngestError)
# A reader that blocks (on a named pipe, say) ends the run with every thread's stack printed.
HANG_SECONDS = 300


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory: pytest.TempPathFactory, colour_model_writer) -> Path:
    return colour_model_writer(tmp_path_factory.mktemp("model"), ["red", "green", "blue"], size=12)


def _config(root: Path) -> DataConfig:
    return DataConfig(
        source=f"folder:{root}", image_size=[12, 12], splits={"validation": 0.2, "test": 0.2}
    )


def _preflight(root: Path, work: Path, model: Path) -> Any:
    return preflight(_config(root))


def _class_count(root: Path, work: Path, model: Path) -> Any:
    return known_class_count(_config(root))


def _snapshot(root: Path, work: Path, model: Path) -> Any:
    return take_snapshot(_config(root)).describe()


def _ingest(root: Path, work: Path, model: Path) -> Any:
    info = ingest(_config(root), work / "dataset", work / "quarantine.csv", work / "report.html")
    assert info["kept"] + info["quarantined"] == info["seen"]
    with (work / "quarantine.csv").open(encoding="utf-8", newline="") as file:
        assert len(list(csv.reader(file))) == info["quarantined"] + 1
    return info["kept"]


def _predict(root: Path, work: Path, model: Path) -> Any:
    code = predict_main(["--model", str(model), "--top-k", "1", str(root)])
    assert code in (0, 2)
    return code


def _batch_predict(root: Path, work: Path, model: Path) -> Any:
    output = work / "predictions.csv"
    code = predict_main(["--model", str(model), "--output", str(output), str(root)])
    assert code in (0, 2)
    with output.open(encoding="utf-8", newline="") as file:
        rows = list(csv.reader(file))[1:]
    assert rows and all(row[1] or row[-1] for row in rows)  # a class or a reason on every row
    return code


READERS: dict[str, Callable[[Path, Path, Path], Any]] = {
    "preflight": _preflight,
    "class count": _class_count,
    "snapshot": _snapshot,
    "ingest": _ingest,
    "predict": _predict,
    "batch predict": _batch_predict,
}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_reader_handles_every_hostile_tree(
    reader: str,
    hostile_tree: Path,
    colour_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True, file=sys.__stderr__)
    try:
        refused = preflight(_config(hostile_tree))
        READERS[reader](hostile_tree, work, colour_model)
    except USER_ERRORS as exc:
        message = str(exc)
        assert message and "Traceback" not in message
        # A source the preflight accepts is one every reader can read (bad files aside).
        assert refused, f"the preflight accepts the tree, but {reader} refuses it: {message}"
    finally:
        faulthandler.cancel_dump_traceback_later()
    captured = capsys.readouterr()  # written out strictly as UTF-8, as a terminal would
    assert "Traceback" not in captured.err
