"""Report figures: pyplot on the Agg backend whatever the environment asks for, figures embedded
as PNG and closed, and no report reaching pyplot by another way."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

from components.common import plots

ROOT = Path(__file__).resolve().parents[2]


def test_pyplot_selects_agg_even_when_the_environment_names_another_backend() -> None:
    code = "from components.common.plots import pyplot; print(pyplot().get_backend())"
    env = {**os.environ, "MPLBACKEND": "svg", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip().lower() == "agg"


def test_a_figure_becomes_an_embedded_png_and_is_closed() -> None:
    plt = plots.pyplot()
    figure, axis = plt.subplots()
    axis.plot([1, 2, 3])
    uri = plots.figure_to_data_uri(figure)
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    assert base64.b64decode(uri[len(prefix) :]).startswith(b"\x89PNG\r\n\x1a\n")
    assert not plt.fignum_exists(figure.number)


def test_reports_reach_pyplot_only_through_the_plots_module() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "components").rglob("*.py"))
        if path.name != "plots.py"
        and ("import matplotlib.pyplot" in (text := path.read_text()) or "matplotlib.use(" in text)
    ]
    assert offenders == []
