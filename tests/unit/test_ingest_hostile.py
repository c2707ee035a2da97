"""Ingest on hostile folders: odd file names, pipes, devices, links, empty or hidden-only class
folders, huge files. Nothing crashes, hangs or is dropped without a count."""

from __future__ import annotations

import csv
import io
import json
import os
from itertools import count
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from components.common.results import DatasetInfo
from components.ingest.report import write_data_report
from components.ingest.run import IngestError, ingest
from components.ingest.sources import open_source
from components.ingest.sources.listing import SourceError, display_name, list_folder
from components.spec import DataConfig

_seed = count(1000)


def _png() -> bytes:
    rng = np.random.default_rng(next(_seed))
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _classes(root: Path, names: tuple[str, ...] = ("a", "b"), per_class: int = 3) -> Path:
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            (root / name / f"{index}.png").write_bytes(_png())
    return root


def _ingest(tmp_path: Path, root: Path, **data) -> tuple[dict, list[list[str]]]:
    config = {
        "source": f"folder:{root}",
        "image_size": [16, 16],
        "splits": {"validation": 0.2, "test": 0.2},
        **data,
    }
    quarantine = tmp_path / "quarantine.csv"
    info = ingest(config, tmp_path / "out", quarantine, tmp_path / "report.html", workers=1)
    with quarantine.open(newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))[1:]
    return info, rows


def _books_balance(info: dict) -> None:
    assert info["kept"] + info["quarantined"] == info["seen"]


def test_a_name_that_is_not_utf8_is_read_and_its_key_escaped(tmp_path):
    root = _classes(tmp_path / "src")
    with open(os.path.join(os.fsencode(root / "a"), b"caf\xe9.png"), "wb") as file:
        file.write(_png())
    with open(os.path.join(os.fsencode(root / "b"), b"bad\xff.txt"), "wb") as file:
        file.write(b"not an image")

    info, rows = _ingest(tmp_path, root)

    assert info["seen"] == 8 and info["kept"] == 7
    assert rows == [[r"b/bad\xff.txt", rows[0][1], rows[0][2]]]
    assert rows[0][1].endswith(r"b/bad\xff.txt") and rows[0][2].startswith("not an image")
    _books_balance(info)


def test_display_name_escapes_only_the_undecodable_bytes():
    name = os.fsdecode(b"na\xefve-\xc3\xa9.png")  # a Latin-1 byte and a real UTF-8 "é"

    assert display_name(name) == "na\\xefve-é.png"
    assert display_name("plain.png") == "plain.png"


def test_a_named_pipe_is_quarantined_not_read(tmp_path):
    root = _classes(tmp_path / "src")
    os.mkfifo(root / "a" / "pipe.png")  # reading it would wait for a writer forever

    info, rows = _ingest(tmp_path, root)

    assert [(key, reason) for key, _, reason in rows] == [
        ("a/pipe.png", "not a regular file: a named pipe")
    ]
    _books_balance(info)


def test_a_link_to_a_device_is_quarantined_not_read(tmp_path):
    root = _classes(tmp_path / "src")
    os.symlink("/dev/zero", root / "a" / "zero.png")  # endless bytes

    info, rows = _ingest(tmp_path, root)

    assert [(key, reason) for key, _, reason in rows] == [
        ("a/zero.png", "not a regular file: a character device")
    ]
    _books_balance(info)


def test_a_broken_link_is_quarantined_with_its_target(tmp_path):
    root = _classes(tmp_path / "src")
    os.symlink("nowhere.png", root / "a" / "broken.png")

    info, rows = _ingest(tmp_path, root)

    assert [(key, reason) for key, _, reason in rows] == [
        ("a/broken.png", "unreadable: broken link to 'nowhere.png'")
    ]


def test_links_to_files_are_read(tmp_path):
    root = _classes(tmp_path / "src")
    outside = tmp_path / "outside.png"
    outside.write_bytes(_png())
    os.symlink(outside, root / "b" / "linked.png")

    info, rows = _ingest(tmp_path, root)

    assert info["kept"] == 7 and rows == []


def test_files_over_max_file_bytes_are_quarantined_unread(tmp_path):
    root = _classes(tmp_path / "src")
    (root / "a" / "huge.png").write_bytes(b"\x89PNG" + b"\0" * 5000)

    info, rows = _ingest(tmp_path, root, max_file_bytes=2000)

    assert [(key, reason) for key, _, reason in rows] == [
        ("a/huge.png", "too large: 5,004 bytes > data.max_file_bytes = 2,000")
    ]
    assert DataConfig(source="sklearn:digits").max_file_bytes >= 64 * 2**20  # a sane default


@pytest.mark.parametrize("hidden", [False, True])
def test_an_empty_class_folder_is_an_error_naming_the_class(tmp_path, hidden):
    root = _classes(tmp_path / "src")
    (root / "c").mkdir()
    if hidden:
        (root / "c" / ".thumbs.png").write_bytes(_png())

    with pytest.raises(IngestError, match="class folder 'c' has no files") as raised:
        _ingest(tmp_path, root)

    assert ("hidden files: 1" in str(raised.value)) is hidden


def test_an_empty_class_left_out_by_the_config_is_fine(tmp_path):
    root = _classes(tmp_path / "src", ("a", "b", "c"))
    (root / "empty").mkdir()

    info, _ = _ingest(tmp_path, root, classes=["a", "b"])

    assert info["class_names"] == ["a", "b"]


def test_a_link_to_a_folder_is_followed(tmp_path):
    root = _classes(tmp_path / "src")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for index in range(2):
        (elsewhere / f"{index}.png").write_bytes(_png())
    os.symlink(elsewhere, root / "a" / "more")

    info, rows = _ingest(tmp_path, root)

    assert info["seen"] == 8 and info["kept"] == 8 and rows == []
    assert (
        info["counts"]["train"]["a"]
        + info["counts"]["validation"]["a"]
        + info["counts"]["test"]["a"]
        == 5
    )


def test_link_loops_and_links_into_other_classes_are_counted_not_followed(tmp_path):
    root = _classes(tmp_path / "src")
    os.symlink("..", root / "a" / "up")  # the source folder: a loop
    os.symlink(root / "b", root / "a" / "b-images")  # would label b's images as a
    os.symlink(".", root / "b" / "self")  # a loop onto itself

    info, rows = _ingest(tmp_path, root)

    assert info["seen"] == 6 and rows == []
    assert info["skipped"] == {"links to a folder already listed": 3}


def test_hidden_and_stray_entries_are_counted_in_the_data_report(tmp_path):
    root = _classes(tmp_path / "src")
    (root / "a" / ".DS_Store").write_bytes(b"x")
    (root / "b" / ".hidden").mkdir()
    (root / "b" / ".hidden" / "x.png").write_bytes(_png())
    (root / "README.txt").write_text("about this data")
    (root / ".git").mkdir()

    info, _ = _ingest(tmp_path, root)

    assert info["skipped"] == {
        "hidden files": 1,
        "hidden folders": 2,
        "files outside the class folders": 1,
    }
    report = (tmp_path / "report.html").read_text()
    assert "2 hidden folders" in report and "1 files outside the class folders" in report


def test_names_with_newlines_commas_and_quotes_keep_one_csv_row(tmp_path):
    root = _classes(tmp_path / "src")
    odd = 'say "hi",\nthen\r\nbye.png'
    (root / "a" / odd).write_bytes(b"not an image")
    (root / "b" / f"kept {odd}").write_bytes(_png())

    info, rows = _ingest(tmp_path, root)

    assert [key for key, _, _ in rows] == [f"a/{odd}"]
    assert info["kept"] == 7


def test_the_folder_listing_is_what_ingest_reads(tmp_path):
    root = _classes(tmp_path / "src")
    (root / "a" / ".hidden.png").write_bytes(_png())
    config = DataConfig(source=f"folder:{root}")

    listing = list_folder(str(root), config)
    source = open_source(config.source, config)

    assert [item.key for item in source] == [
        f"{name}/{file}" for name, files in listing.classes.items() for file in files
    ]
    assert source.skipped == listing.skipped == {"hidden files": 1}


def test_a_folder_that_cannot_be_listed_says_so(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root may list any folder")
    root = _classes(tmp_path / "src")
    (root / "a").chmod(0)
    try:
        with pytest.raises(SourceError, match="cannot be listed"):
            list_folder(str(root), DataConfig(source=f"folder:{root}"))
    finally:
        (root / "a").chmod(0o755)


def test_info_records_what_was_skipped(tmp_path):
    root = _classes(tmp_path / "src")
    (root / "a" / ".x").write_bytes(b"")

    info, _ = _ingest(tmp_path, root)
    saved = json.loads((tmp_path / "out" / "dataset_info.json").read_text())

    assert saved["skipped"] == info["skipped"] == {"hidden files": 1}
    again = write_data_report(DatasetInfo.read(tmp_path / "out"), tmp_path / "again.html")
    assert "1 hidden files" in again.read_text()  # the report reads the saved info
