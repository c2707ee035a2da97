"""The export report: one table and a size / accuracy / latency chart of every format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components.common.export_artifact import ExportRecord, FormatRow
from components.common.html import Markup, escape, image_tag, page, table
from components.common.plots import figure_to_data_uri, pyplot
from components.export.measure import THROUGHPUT_BATCH
from components.spec.export import NATIVE

HEADERS = (
    "format",
    "runtime",
    "precision",
    "size (MB)",
    "test accuracy",
    "vs original",
    "top-1 agreement",
    "latency p50 (ms, batch 1)",
    "latency p90 (ms, batch 1)",
    f"throughput (images/s, batch {THROUGHPUT_BATCH})",
    "verdict",
)


def _cell(value: float | None, pattern: str) -> str:
    return pattern.format(value) if value is not None else "-"


def _verdict(row: FormatRow) -> Markup:
    if row.format == NATIVE:
        return Markup('<span class="muted">the original</span>')
    if row.passed:
        return Markup(f'<span class="ok">kept</span> (max drop {row.max_accuracy_drop:.3f})')
    return Markup(f'<span class="bad">failed</span>: {escape(row.reason or "")}')


def rows(record: ExportRecord) -> list[list[Any]]:
    return [
        [
            row.format,
            row.runtime,
            row.precision,
            f"{row.size_bytes / 1e6:.3g}" if row.size_bytes is not None else "-",
            _cell(row.accuracy, "{:.4f}"),
            _cell(row.accuracy_delta, "{:+.4f}"),
            _cell(row.agreement, "{:.2%}"),
            _cell(row.latency_ms_p50, "{:.3f}"),
            _cell(row.latency_ms_p90, "{:.3f}"),
            _cell(row.throughput, "{:.0f}"),
            _verdict(row),
        ]
        for row in record.formats
    ]


def _figure(value: float | None) -> float:
    assert value is not None  # a measured row has every figure
    return value


def chart(record: ExportRecord) -> str:
    plt = pyplot()

    measured = [r for r in record.formats if r.measured]
    names = [r.format for r in measured]
    colours = [
        "#8c959f" if r.format == NATIVE else ("#1a7f37" if r.passed else "#cf222e")
        for r in measured
    ]
    panels = (
        ("size (MB)", [_figure(r.size_bytes) / 1e6 for r in measured]),
        ("test accuracy", [_figure(r.accuracy) for r in measured]),
        ("latency p50 at batch 1 (ms, log scale)", [_figure(r.latency_ms_p50) for r in measured]),
    )
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for axis, (title, values) in zip(axes, panels, strict=True):
        axis.barh(names, values, color=colours)
        axis.set_title(title)
        axis.invert_yaxis()
        for y, value in enumerate(values):
            axis.text(value, y, f" {value:.3g}", va="center", fontsize=8)
        axis.margins(x=0.25)
    axes[2].set_xscale("log")  # formats differ by orders of magnitude
    axes[2].set_xlim(min(panels[2][1]) / 2, max(panels[2][1]) * 8)
    accuracies = panels[1][1]
    low = min(accuracies)
    axes[1].set_xlim(max(0.0, low - (1 - low) - 0.02), 1.0)
    figure.suptitle("grey: original; green: kept; red: over its accuracy budget", fontsize=9)
    figure.tight_layout()
    return image_tag(figure_to_data_uri(figure), "size, accuracy and latency per format")


def write_report(record: ExportRecord, path: str | Path) -> Path:
    intro = (
        f"<p>{escape(record.model)} ({escape(record.framework)}): every format run with "
        f"its own runtime on the whole test split ({record.test_images} images) on "
        f"{escape(record.cpu)}. int8 formats were calibrated on "
        f"{record.calibration_images} train images.</p>"
        f"<p>Input of every exported graph: {escape(record.input)}, input_size "
        f"{record.input_size[0]}x{record.input_size[1]}, {record.channels} "
        "channel(s).</p>"
    )
    sections = [intro, "<h2>Formats</h2>", table(HEADERS, rows(record))]
    if any(r.measured for r in record.formats):
        sections += ["<h2>Size, accuracy and latency</h2>", chart(record)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page(f"Export: {record.model}", sections))
    return path
