"""`submit.py --compare RUN [RUN ...]`: local runs side by side, without a tracking server.

A run is a results folder (`runs/<experiment>/<run>/`, which holds the run's `summary.json`), its
name under the runs folder, or `last:N` (the newest N run folders). The terminal gets one table
of every candidate x seed of those runs; one self-contained HTML page overlays their training
curves (inline SVG) and lists their test metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from components.common import html
from components.common.files import local_path, read_json
from components.common.model_card import CARD_FILE
from components.common.results import CompareSummary

SUMMARY_FILE = "summary.json"  # the compare step's summary, written into each local run folder
PAGE = "compare.html"
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


class CompareError(ValueError):
    """A run to compare could not be found or read."""


@dataclass
class ComparedRun:
    label: str  # <experiment>/<run>
    folder: Path
    summary: CompareSummary


def run_folders(runs_dir: Path) -> list[Path]:
    """Every run folder with a summary, oldest first."""
    found = [p.parent for p in runs_dir.glob(f"*/*/{SUMMARY_FILE}") if not p.parent.is_symlink()]
    return sorted(found, key=lambda p: (p / SUMMARY_FILE).stat().st_mtime)


def resolve(specs: list[str], runs_dir: Path) -> list[ComparedRun]:
    folders: list[Path] = []
    for spec in specs:
        if spec.startswith("last:"):
            count = spec.removeprefix("last:")
            if not count.isdigit() or int(count) < 1:
                raise CompareError(f"{spec}: use last:N with N a whole number, e.g. last:2")
            every = run_folders(runs_dir)
            if len(every) < int(count):
                raise CompareError(
                    f"{spec}: {runs_dir} holds {len(every)} finished run(s) with a summary"
                )
            folders += every[-int(count) :]
            continue
        candidates = [Path(spec), *(p.parent for p in runs_dir.glob(f"*/{spec}/{SUMMARY_FILE}"))]
        folder = next((c for c in candidates if (c / SUMMARY_FILE).is_file()), None)
        if folder is None:
            raise CompareError(
                f"{spec}: not a run folder with {SUMMARY_FILE} nor a run under {runs_dir} "
                "(give a folder such as runs/digits/latest, a run's name, or last:2)"
            )
        folders.append(folder)
    runs = []
    for folder in folders:
        resolved = folder.resolve()
        summary = CompareSummary.model_validate(read_json(resolved / SUMMARY_FILE))
        runs.append(ComparedRun(f"{resolved.parent.name}/{resolved.name}", resolved, summary))
    return runs


def table(runs: list[ComparedRun]) -> list[str]:
    metrics = sorted({m for r in runs for result in r.summary.all_runs for m in result.metrics})
    shown = [m for m in ("accuracy", "balanced_accuracy", "macro_f1", "log_loss") if m in metrics]
    headers = ["run", "candidate", "seed", *shown]
    rows = [
        [run.label, result.name, str(result.seed)]
        + [f"{result.metrics[m]:.4f}" if m in result.metrics else "" for m in shown]
        for run in runs
        for result in run.summary.all_runs
    ]
    widths = [max(len(c) for c in column) for column in zip(headers, *rows, strict=True)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    return [
        line.format(*headers).rstrip(),
        line.format(*("-" * w for w in widths)).rstrip(),
        *(line.format(*r).rstrip() for r in rows),
    ]


def _history(model_uri: str) -> dict[str, list[float]]:
    card = local_path(model_uri) / CARD_FILE
    return dict(read_json(card).get("history") or {}) if card.is_file() else {}


def _svg(title: str, lines: list[tuple[str, list[float]]]) -> str:
    width, height, pad = 520, 260, 36
    values = [v for _, series in lines for v in series]
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    longest = max(len(series) for _, series in lines)
    parts = [f'<svg width="{width}" height="{height + 20 * len(lines)}" role="img">']
    parts.append(f'<text x="{pad}" y="16" font-size="13">{html.escape(title)}</text>')
    parts.append(
        f'<rect x="{pad}" y="{pad - 10}" width="{width - 2 * pad}" height="{height - 2 * pad}" '
        'fill="none" stroke="#ccc"/>'
    )
    for index, (label, series) in enumerate(lines):
        colour = COLOURS[index % len(COLOURS)]
        points = " ".join(
            f"{pad + (width - 2 * pad) * (i / max(longest - 1, 1)):.1f},"
            f"{pad - 10 + (height - 2 * pad) * (1 - (v - low) / span):.1f}"
            for i, v in enumerate(series)
        )
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>'
        )
        for i, v in enumerate(series):
            x = pad + (width - 2 * pad) * (i / max(longest - 1, 1))
            y = pad - 10 + (height - 2 * pad) * (1 - (v - low) / span)
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>')
        parts.append(
            f'<text x="{pad}" y="{height + 14 + 20 * index}" font-size="12" fill="{colour}">'
            f"{html.escape(label)}</text>"
        )
    parts.append(
        f'<text x="4" y="{pad}" font-size="11">{high:.3f}</text>'
        f'<text x="4" y="{height - pad - 10}" font-size="11">{low:.3f}</text></svg>'
    )
    return "".join(parts)


def write_page(runs: list[ComparedRun], path: Path) -> Path:
    histories = {
        f"{run.label} {result.name} seed {result.seed}": _history(result.model_uri)
        for run in runs
        for result in run.summary.all_runs
    }
    metrics = sorted({m for h in histories.values() for m in h})
    sections = [f"<pre>{html.escape(chr(10).join(table(runs)))}</pre>"]
    for metric in metrics:
        lines = [(label, h[metric]) for label, h in histories.items() if h.get(metric)]
        sections.append(_svg(f"{metric} per epoch", lines))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        html.page("Runs compared: " + ", ".join(r.label for r in runs), sections), encoding="utf-8"
    )
    return path


def compare_runs(specs: list[str], runs_dir: Path) -> tuple[list[str], Path]:
    """The side-by-side table's lines and the HTML page written under `runs_dir`."""
    runs = resolve(specs, runs_dir)
    return table(runs), write_page(runs, runs_dir / PAGE)
