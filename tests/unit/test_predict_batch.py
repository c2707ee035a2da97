"""Batch prediction: `--output predictions.csv|.jsonl FOLDER` streams a folder in bounded memory."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from components.predict.cli import main

CLASSES = ["red", "green", "blue"]
COLOURS = {"red": (230, 10, 10), "green": (10, 220, 10), "blue": (10, 10, 240)}


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory, colour_model_writer):
    return colour_model_writer(tmp_path_factory.mktemp("model"), CLASSES, size=64)


def write_folder(root: Path, count: int) -> Path:
    """`count` solid-colour PNGs in nested folders of 500; the colour names the class."""
    names = list(COLOURS)
    for index in range(count):
        folder = root / f"part-{index // 500:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        colour = names[index % 3]
        Image.new("RGB", (10, 10), COLOURS[colour]).save(folder / f"{index:05d}-{colour}.png")
    return root


def test_csv_has_every_file_its_top_k_and_a_reason_for_unreadable_ones(
    colour_model, tmp_path, capsys
):
    folder = write_folder(tmp_path / "images", 40)
    (folder / "part-000" / "broken.png").write_bytes(b"\x89PNG not really")
    output = tmp_path / "out" / "predictions.csv"
    code = main(["--model", str(colour_model), "--output", str(output), "-k", "2", str(folder)])
    err = capsys.readouterr().err
    assert code == 2, "an unreadable file is reported in the exit code"
    with output.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 41
    assert list(rows[0]) == [
        "path",
        "class_1",
        "probability_1",
        "class_2",
        "probability_2",
        "reason",
    ]
    broken = [r for r in rows if r["path"].endswith("broken.png")]
    assert len(broken) == 1 and "not a readable image" in broken[0]["reason"]
    assert broken[0]["class_1"] == ""
    scored = [r for r in rows if not r["reason"]]
    assert len(scored) == 40
    for row in scored:
        assert row["path"].rsplit("-", 1)[-1] == f"{row['class_1']}.png"
        assert float(row["probability_1"]) > 0.99
    assert "40 image(s) scored" in err and "images/s" in err and "Traceback" not in err


def test_jsonl_by_extension(colour_model, tmp_path, capsys):
    folder = write_folder(tmp_path / "images", 5)
    output = tmp_path / "predictions.jsonl"
    assert main(["--model", str(colour_model), "--output", str(output), str(folder)]) == 0
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(lines) == 5 and all(len(line["top"]) == 3 for line in lines)
    assert lines[0]["top"][0]["class"] == "red"


def test_unknown_output_suffix_is_a_usage_error(colour_model, tmp_path, capsys):
    code = main(["--model", str(colour_model), "--output", str(tmp_path / "p.xlsx"), "x"])
    assert code == 2 and "name a .csv or .jsonl file" in capsys.readouterr().err


PEAK_MEMORY = textwrap.dedent(
    """
    import resource, sys
    from components.predict.cli import main
    code = main(sys.argv[1:])
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print("PEAK", code, peak_kib)
    """
)


def peak_memory_mib(model: Path, folder: Path, output: Path) -> float:
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            PEAK_MEMORY,
            "--model",
            str(model),
            "--output",
            str(output),
            "--batch-size",
            "64",
            str(folder),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[2],
    )
    line = [x for x in completed.stdout.splitlines() if x.startswith("PEAK")]
    assert line, completed.stderr[-2000:]
    _, code, peak_kib = line[-1].split()
    assert code == "0", completed.stderr[-2000:]
    return int(peak_kib) / 1024


def test_peak_memory_does_not_grow_with_the_folder(colour_model, tmp_path):
    """5,000 images need no more memory than 1,000: the folder is streamed, not loaded."""
    small = write_folder(tmp_path / "small", 1000)
    large = write_folder(tmp_path / "large", 5000)
    small_peak = peak_memory_mib(colour_model, small, tmp_path / "small.csv")
    large_peak = peak_memory_mib(colour_model, large, tmp_path / "large.csv")
    with (tmp_path / "large.csv").open() as handle:
        assert sum(1 for _ in handle) == 5001
    # The model takes 64x64x3 float32 (48 KiB per decoded image): holding the 4,000 more images
    # at once would add about 190 MiB. The allowance covers allocator noise between processes.
    print(f"peak memory: {small_peak:.0f} MiB at 1,000 images, {large_peak:.0f} MiB at 5,000")
    assert large_peak - small_peak < 20, (small_peak, large_peak)
