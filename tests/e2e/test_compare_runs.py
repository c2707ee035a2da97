"""`submit.py --compare` of two local digits runs: the side-by-side table and one HTML page."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.cli import EXIT_USAGE, main

pytestmark = pytest.mark.e2e


def test_two_local_runs_side_by_side(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    for seed in (0, 1):
        argv = ["--experiment", "digits", "--runs-dir", str(runs), "--set", f"seeds=[{seed}]"]
        assert (
            main(
                [
                    *argv,
                    "--set",
                    "models.0.epochs=1",
                    "--set",
                    "tracking.mlflow=",
                    "--set",
                    "gate.min=0",
                ]
            )
            == 0
        )
    capsys.readouterr()

    assert main(["--compare", "last:2", "--runs-dir", str(runs)]) == 0

    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["run", "candidate", "seed"]
    rows = [line.split() for line in out[2:-1]]
    assert sorted(row[2] for row in rows) == ["0", "1"]
    assert len({row[0] for row in rows}) == 2  # one row from each run
    page = Path(out[-1].removeprefix("curves and metrics: "))
    text = page.read_text()
    assert page.is_file() and text.count("<polyline") >= 2 and "seed 1" in text


def test_an_unknown_run_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--compare", "no-such-run", "--runs-dir", str(tmp_path)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("error: no-such-run: not a run folder") and "Traceback" not in err
    assert main(["--compare", "last:2", "--runs-dir", str(tmp_path)]) == EXIT_USAGE
