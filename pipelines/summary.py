"""The end-of-run summary printed by the CLI."""

from __future__ import annotations

from typing import Any

from components.common.results import CompareSummary, RegistrationRecord
from components.spec import TABLE_METRICS


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    return [
        line.format(*headers),
        line.format(*("-" * w for w in widths)),
        *(line.format(*map(str, r)) for r in rows),
    ]


def format_result(result: dict[str, Any]) -> str:
    lines = [f"experiment {result['experiment']} on {result['target']}: {result['status']}"]
    if result.get("url"):
        lines.append(f"run: {result['url']}")
    tasks = result.get("tasks") or []
    if tasks:
        lines += ["", "steps:"]
        lines += [
            "  " + s
            for s in _table(
                ["step", "status", "seconds"],
                [[t["name"], t["status"], f"{t['seconds']:.1f}"] for t in tasks],
            )
        ]
    if result.get("summary"):
        lines += _candidates(CompareSummary.model_validate(result["summary"]))
    if result.get("registration"):
        record = RegistrationRecord.model_validate(result["registration"])
        lines.append(f"registered: {record.name} {record.version} at {record.path}")
        if record.exports:
            lines.append(f"exported: {', '.join(record.exports)} (in {record.path}/export/)")
    if result.get("run_dir"):
        lines.append(f"artifacts: {result['run_dir']}")
    for report in result.get("reports") or []:
        lines.append(f"  html: {report}")
    if result.get("seconds") is not None:
        lines.append(f"total: {result['seconds']:.1f} s")
    lines += _error_lines(result)
    return "\n".join(lines)


def _error_lines(result: dict[str, Any]) -> list[str]:
    """Why the run failed or stopped, last: the failing step's own message and its log."""
    if not result.get("error"):
        return []
    lines = [""]
    if result.get("error_log"):
        lines.append(f"full log of {result['failed_step']}: {result['error_log']}")
    if result.get("status") == "STOPPED":
        return [*lines, result["error"]]
    return [*lines, f"error: {result['error']}"]


def _candidates(summary: CompareSummary) -> list[str]:
    """The comparison table, the best run against the reference, the gate's verdict."""
    metrics = summary.shown_metrics(TABLE_METRICS)
    rows = []
    for row in summary.rows:
        cells = []
        for m in metrics:
            stats = row.metrics.get(m)
            cells.append(
                f"{stats.mean:.4f}" + (f" ± {stats.std:.4f}" if row.seeds > 1 else "")
                if stats
                else ""
            )
        rows.append([row.name, row.framework, str(row.seeds), *cells])
    lines = ["", "candidates (test set):"]
    lines += ["  " + s for s in _table(["candidate", "framework", "seeds", *metrics], rows)]
    reference, best = summary.reference, summary.best
    if reference:
        ours = best.metrics.get(reference.metric)
        if ours is not None:
            lines.append(
                f"  best {reference.metric} {ours:.4f} vs reference {reference.value:.4f} "
                f"({ours - reference.value:+.4f})"
            )
    lines.append(f"  {summary.gate.message}")
    lines.append(f"  best model: {best.model_uri}")
    return lines
