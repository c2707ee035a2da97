"""The ingest HTML data report: one self-contained file (charts and thumbnails are data URIs).

Sections: summary, images per split and class (chart and table), quarantine reasons with
examples, duplicates and leakage, conversions and extension mismatches, image size
distribution, and a few thumbnails per class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.common import html, plots
from components.common.dataset import SPLITS
from components.common.images import thumbnail_data_uri
from components.common.results import DatasetInfo

THUMBNAIL_SIDE = 96
# Up to this many classes the count chart has one labelled bar per class; beyond it, it shows
# the distribution of class sizes (the table below it still lists every class).
LABELLED_CLASSES = 60
SPLIT_COLOURS = {"train": "#4c72b0", "validation": "#dd8452", "test": "#55a868"}
# Text columns read better left-aligned than the house table style's numbers.
TEXT_TABLE_STYLE = "<style>.text-table td,.text-table th{text-align:left}</style>"


@dataclass
class ReportDetails:
    """What the report shows beyond dataset_info (kept out of dataset_info.json)."""

    thumbnails: dict[str, list[str]] = field(default_factory=dict)  # class -> image data URIs
    widths: list[int] = field(default_factory=list)
    heights: list[int] = field(default_factory=list)
    quarantine_examples: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    extension_mismatches: list[tuple[str, str, str]] = field(default_factory=list)  # key, ext, real


def thumbnail_uri(encoded: bytes) -> str:
    """A small embedded picture of an encoded image; tiny images enlarged without smoothing."""
    return thumbnail_data_uri(encoded, THUMBNAIL_SIDE) or ""


def write_data_report(
    info: DatasetInfo, path: str | Path, details: ReportDetails | None = None
) -> Path:
    details = details or ReportDetails()
    sections = [_summary(info), _counts(info)]
    if info.quarantine_reasons:
        sections.append(_quarantine(info, details))
    sections.append(_conversions(info, details))
    if details.widths:
        sections.append(_sizes(info, details))
    if details.thumbnails:
        sections.append(_thumbnails(info, details))
    if info.excluded_by_config:
        sections.append(
            "<h2>Excluded by the config</h2>"
            + html.table(["rule", "items"], sorted(info.excluded_by_config.items()))
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html.page("Data report", [TEXT_TABLE_STYLE, *sections]))
    return path


def _summary(info: DatasetInfo) -> str:
    extras = info.extra_train_sources
    extra = (
        " Extra training sources (train split only): "
        + ", ".join(f"<code>{html.escape(s)}</code>" for s in extras)
        + "."
        if extras
        else ""
    )
    own = info.source_splits
    splits = (
        f" The source's own {' and '.join(own)} split{'s' if len(own) > 1 else ''} kept as given."
        if own
        else ""
    )
    leakage = sum(info.leakage.values())
    skipped = info.skipped
    listed = (
        " Not items (skipped while listing): "
        + ", ".join(f"{count} {html.escape(what)}" for what, count in sorted(skipped.items()))
        + "."
        if skipped
        else ""
    )
    return (
        f"<p>Source <code>{html.escape(info.source)}</code>.{extra}{splits}{listed}</p>"
        f"<p><b>{info.seen}</b> items seen: <b>{info.kept}</b> kept, "
        f"<b>{info.quarantined}</b> quarantined (of which {info.duplicates} exact "
        f"duplicate(s) and {leakage} leaked across splits), {info.converted} converted. "
        f"{info.num_classes} classes, {info.channels} channel(s). "
        f"Fingerprint <code>{info.fingerprint[:16]}</code>.</p>"
    )


def _counts(info: DatasetInfo) -> str:
    names = info.class_names
    rows = [[name, *(info.counts[s][name] for s in SPLITS)] for name in names]
    rows.append([html.Markup("<b>total</b>"), *(info.num_examples[s] for s in SPLITS)])
    return (
        "<h2>Images per split and class</h2>"
        + html.image_tag(_count_chart(info), "images per split and class")
        + html.table(["class", *SPLITS], rows)
    )


def _count_chart(info: DatasetInfo) -> str:
    plt = plots.pyplot()

    names = info.class_names
    counts = info.counts
    if len(names) <= LABELLED_CLASSES:
        figure, axes = plt.subplots(figsize=(8, max(2.0, 0.28 * len(names) + 1)))
        left = [0] * len(names)
        # bars at positions, names as tick labels: class names such as "0".."9" are labels,
        # not numbers to place on an axis
        positions = list(range(len(names)))
        for split in SPLITS:
            values = [counts[split][name] for name in names]
            axes.barh(positions, values, left=left, label=split, color=SPLIT_COLOURS[split])
            left = [a + b for a, b in zip(left, values, strict=True)]
        axes.set_yticks(positions, names)
        axes.invert_yaxis()
        axes.set_xlabel("images")
        axes.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=3, frameon=False)
    else:
        figure, axes = plt.subplots(figsize=(8, 3.5))
        for split in SPLITS:
            values = [counts[split][name] for name in names]
            if any(values):
                axes.hist(values, bins=30, alpha=0.6, label=split, color=SPLIT_COLOURS[split])
        axes.set_xlabel("images per class")
        axes.set_ylabel("classes")
        axes.legend()
    return plots.figure_to_data_uri(figure)


def _quarantine(info: DatasetInfo, details: ReportDetails) -> str:
    from components.ingest.validate import REASONS

    reasons = sorted(info.quarantine_reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    rows = [[code, REASONS.get(code, ""), n] for code, n in reasons]
    section = "<h2>Quarantine</h2>" + _text_table(["reason", "meaning", "items"], rows)
    if info.leakage:
        section += "<p>Leakage, removed from the first split named:</p>" + html.table(
            ["splits", "images"], sorted(info.leakage.items())
        )
    examples = [row for code, _ in reasons for row in details.quarantine_examples.get(code, [])]
    if examples:
        section += (
            "<p class='muted'>Examples (a few per reason; the Quarantine CSV lists every item):</p>"
            + _text_table(["key", "source", "reason"], examples)
        )
    return section


def _conversions(info: DatasetInfo, details: ReportDetails) -> str:
    section = "<h2>Formats and conversions</h2>"
    formats = sorted(info.source_formats.items(), key=lambda kv: -kv[1])
    section += "<p>Formats of the kept images, as decoded (not as named):</p>" + html.table(
        ["format", "images"], formats
    )
    conversions = sorted(info.conversions.items(), key=lambda kv: -kv[1])
    if conversions:
        section += (
            "<p>Converted to the configured channels (stored re-encoded; JPEG sources as JPEG, "
            "others as PNG):</p>" + html.table(["conversion", "images"], conversions)
        )
    mismatches = info.extension_mismatches
    if mismatches:
        section += (
            f"<p>{mismatches} file(s) kept whose extension names another format "
            "(stored with their real format):</p>"
            + _text_table(["key", "extension", "real format"], details.extension_mismatches)
        )
    return section


def _sizes(info: DatasetInfo, details: ReportDetails) -> str:
    if len(set(details.widths)) <= 1 and len(set(details.heights)) <= 1:
        width, height = details.widths[0], details.heights[0]
        return (
            f"<h2>Image sizes</h2><p>All {len(details.widths)} images looked at are "
            f"{width} x {height} pixels.</p>"
        )
    plt = plots.pyplot()

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for axis, values, name in (
        (axes[0], details.widths, "width"),
        (axes[1], details.heights, "height"),
    ):
        axis.hist(values, bins=40, color="#4c72b0")
        axis.set_xlabel(f"{name} (pixels)")
        axis.set_ylabel("images")
    sizes = info.image_sizes
    rows = (
        [
            [name, stat.min, stat.median, stat.max]
            for name, stat in (("width", sizes.width), ("height", sizes.height))
        ]
        if sizes is not None
        else []
    )
    return (
        "<h2>Image sizes</h2>"
        + html.image_tag(plots.figure_to_data_uri(figure), "image size distribution")
        + html.table(["", "min", "median", "max"], rows)
    )


def _thumbnails(info: DatasetInfo, details: ReportDetails) -> str:
    rows = []
    for name in info.class_names:
        pictures = "".join(
            f'<img alt="{html.escape(name)}" src="{uri}" '
            f'style="margin:2px;max-height:{THUMBNAIL_SIDE}px;image-rendering:pixelated">'
            for uri in details.thumbnails.get(name, [])
        )
        rows.append([name, html.Markup(pictures)])
    return "<h2>Samples per class</h2>" + _text_table(["class", "images"], rows)


def _text_table(headers: list[str], rows: Any) -> str:
    return f'<div class="text-table">{html.table(headers, rows)}</div>'
