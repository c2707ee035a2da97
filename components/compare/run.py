"""The compare step: a table of every candidate x seed, the best candidate, and the gate."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from components.common import html

TABLE_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "top5_accuracy", "log_loss")
LOWER_IS_BETTER = {"log_loss"}


def compare(
    results: list[dict[str, Any]],
    metric: str,
    gate_min: float,
    reference: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Pick the best run by `metric` (mean over seeds decides the candidate); apply the gate."""
    if not results:
        raise ValueError("no candidate results to compare: every training run failed or none was configured")
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for result in results:
        # kfp.local hands Collected integers over as floats
        result = {**result, "seed": int(result["seed"])}
        by_name[result["name"]].append(result)
    present = [m for m in TABLE_METRICS if any(m in r["metrics"] for r in results)]
    if metric not in present:
        raise ValueError(f"gate metric '{metric}' was not computed; available: {', '.join(present)}")

    rows = []
    for name, runs in by_name.items():
        row: dict[str, Any] = {"name": name, "framework": runs[0].get("framework", ""), "seeds": len(runs)}
        for m in present:
            values = [float(r["metrics"][m]) for r in runs if m in r["metrics"]]
            row[m] = {"mean": statistics.fmean(values), "std": statistics.pstdev(values) if len(values) > 1 else 0.0}
        rows.append(row)
    sign = 1 if metric not in LOWER_IS_BETTER else -1
    rows.sort(key=lambda r: sign * r[metric]["mean"], reverse=True)
    best_name = rows[0]["name"]
    best_run = max(by_name[best_name], key=lambda r: sign * float(r["metrics"][metric]))
    best_value = float(best_run["metrics"][metric])
    passed = best_value >= gate_min if sign > 0 else best_value <= gate_min
    gap = best_value - gate_min
    message = (
        f"gate passed: {best_name} (seed {best_run['seed']}) {metric} {best_value:.4f} >= {gate_min:.4f}"
        if passed
        else f"gate failed: best {metric} {best_value:.4f} ({best_name}, seed {best_run['seed']}) "
        f"missed the minimum {gate_min:.4f} by {abs(gap):.4f}; nothing is registered"
    )
    return {
        "metric": metric,
        "rows": rows,
        "best": {
            "name": best_name,
            "seed": int(best_run["seed"]),
            "value": best_value,
            "model_uri": best_run["model_uri"],
            "metrics": best_run["metrics"],
        },
        "gate": {"passed": passed, "min": gate_min, "message": message},
        "reference": reference,
        "runs": len(results),
    }


def _cell(stats: dict[str, float] | None, seeds: int) -> str:
    if stats is None:
        return ""
    return f"{stats['mean']:.4f} ± {stats['std']:.4f}" if seeds > 1 else f"{stats['mean']:.4f}"


def to_markdown(summary: dict[str, Any]) -> str:
    metrics = [m for m in TABLE_METRICS if m in summary["rows"][0]]
    lines = [
        "| candidate | framework | seeds | " + " | ".join(metrics) + " |",
        "|---|---|---:|" + "---:|" * len(metrics),
    ]
    for row in summary["rows"]:
        cells = [_cell(row.get(m), row["seeds"]) for m in metrics]
        lines.append(f"| {row['name']} | {row['framework']} | {row['seeds']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(summary["gate"]["message"])
    reference = summary.get("reference")
    if reference:
        lines.append(f"reference {reference['metric']}: {reference['value']:.4f}")
    return "\n".join(lines) + "\n"


def write_html(summary: dict[str, Any], path: str | Path) -> Path:
    metrics = [m for m in TABLE_METRICS if m in summary["rows"][0]]
    rows = [[row["name"], row["framework"], row["seeds"], *(_cell(row.get(m), row["seeds"]) for m in metrics)] for row in summary["rows"]]
    css = "ok" if summary["gate"]["passed"] else "bad"
    sections = [
        html.table(["candidate", "framework", "seeds", *metrics], rows),
        f"<p class='{css}'>{html.escape(summary['gate']['message'])}</p>",
    ]
    reference = summary.get("reference")
    if reference:
        sections.append(f"<p>Reference {html.escape(reference['metric'])}: {reference['value']:.4f}</p>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html.page(f"Candidates by {summary['metric']}", sections))
    return path
