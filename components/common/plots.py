"""Figures for the HTML reports: pyplot on the headless Agg backend, and a figure as an embedded PNG.

Every report draws through `pyplot()`, so a step never needs a display, whichever backend the
environment would pick by default.
"""

from __future__ import annotations

import base64
import io
from typing import Any


def pyplot() -> Any:
    """`matplotlib.pyplot`, with the Agg (file-only) backend selected."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_to_data_uri(figure: Any, dpi: int = 110) -> str:
    """A matplotlib figure as an embedded PNG (the figure is closed)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    pyplot().close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
