"""Output paths the CLI is given: each bad one is exit 2 with one line, before any work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.cli import main

REPO_ROOT = Path(__file__).resolve().parents[2]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


def test_compile_only_to_a_folder(tmp_path, capsys):
    assert main(["-e", "digits", "--compile-only", str(tmp_path)]) == 2

    assert f"--compile-only {tmp_path} is a folder; give a file" in one_line_error(capsys)


@pytest.mark.parametrize("name", ["pipeline", "pipeline.json", "pipeline.txt"])
def test_compile_only_without_yaml(tmp_path, capsys, name):
    output = tmp_path / name

    assert main(["-e", "digits", "--compile-only", str(output)]) == 2

    assert "give a file name ending in .yaml" in one_line_error(capsys)
    assert not output.exists()


def test_compile_only_below_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    output = tmp_path / "afile" / "sub" / "pipeline.yaml"

    assert main(["-e", "digits", "--compile-only", str(output)]) == 2

    assert f"is below the file {tmp_path / 'afile'}, not a folder" in one_line_error(capsys)


def test_compile_only_to_an_unwritable_folder(tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root may write anywhere")
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert main(["-e", "digits", "--compile-only", str(folder / "p.yaml")]) == 2
    finally:
        folder.chmod(0o700)

    assert "permission denied" in one_line_error(capsys)


def test_compile_only_to_a_read_only_file_system_place(tmp_path, capsys):
    # What os.access cannot foresee (here: a name the file system refuses) is still one line.
    output = tmp_path / ("x" * 300 + ".yaml")

    assert main(["-e", "digits", "--compile-only", str(output)]) == 2

    assert one_line_error(capsys).startswith(f"error: --compile-only {output}: File name too long")


def test_runs_dir_that_is_a_file(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.write_text("not a folder")

    assert main(["-e", "digits", "--runs-dir", str(runs)]) == 2

    assert f"--runs-dir {runs}: it is a file, not a folder" in one_line_error(capsys)


def test_the_script_exits_2_without_a_traceback(tmp_path):
    completed = subprocess.run(
        [sys.executable, "pipelines/submit.py", "-e", "digits", "--compile-only", str(tmp_path)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert completed.returncode == 2
    assert completed.stderr.count("\n") == 1 and "Traceback" not in completed.stderr
