"""The compare step: mean ± std of every candidate over its seeds, the best run, and the gate.

The candidate with the best mean of the configured metric wins (so one lucky seed does not
decide); its best seed is the model that goes on to the gate and the registry.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

from components.common import html
from components.common.names import curves_report, evaluation_report
from components.common.results import (
    BestRun,
    CandidateRow,
    CompareSummary,
    EvaluationResult,
    GateVerdict,
    Reference,
    RunFailure,
    Stats,
)
from components.spec import LOWER_IS_BETTER, METRICS, SCALARS, TABLE_METRICS

# What a planned run without a result is listed with: on every target its failed task (FAILED
# in the run's graph) holds the reason.
MISSING_RESULT = "no result: its train or evaluate task failed (that task's log says why)"
STD_NOTE = "± is the sample standard deviation over seeds (n - 1 in the denominator)."

__all__ = ["compare", "failure_lines", "to_markdown", "write_html"]


def mean_std(values: list[float]) -> Stats:
    """Mean and sample standard deviation (0 for a single value)."""
    return Stats(
        mean=statistics.fmean(values),
        std=statistics.stdev(values) if len(values) > 1 else 0.0,
    )


def compare(
    results: list[EvaluationResult],
    metric: str,
    gate_min: float,
    reference: Reference | None = None,
    planned: list[tuple[str, int]] | None = None,
) -> CompareSummary:
    """Rank the candidates by the mean of `metric` over their seeds; apply the gate to the
    best seed of the best candidate. A `planned` (candidate, seed) without a result (one of
    its tasks failed, compare.on_failure: continue) is listed as failed; when every run
    failed there is nothing to compare."""
    finished = {(r.name, r.seed) for r in results}
    failed = [
        RunFailure(name=name, seed=seed, error=MISSING_RESULT)
        for name, seed in sorted(set(planned or []) - finished)
    ]
    if not results:
        listed = ", ".join(f"{f.name} seed {f.seed}" for f in failed)
        raise ValueError(
            f"no candidate results to compare: every run failed ({listed})"
            if failed
            else "no candidate results to compare: none was configured"
        )
    by_name: dict[str, list[EvaluationResult]] = defaultdict(list)
    for result in results:
        by_name[result.name].append(result)
    present = _present_metrics(results, metric)
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    rows = [_row(name, runs, present) for name, runs in by_name.items()]
    # best mean first; ties go to the name that sorts first, so the order is reproducible
    rows.sort(key=lambda r: (-sign * r.metrics[metric].mean, r.name))
    for rank, row in enumerate(rows, start=1):
        row.rank = rank
    best_name = rows[0].name
    best_run = max(by_name[best_name], key=lambda r: (sign * r.metrics[metric], -r.seed))
    best_value = best_run.metrics[metric]
    return CompareSummary(
        metric=metric,
        higher_is_better=metric not in LOWER_IS_BETTER,
        rows=rows,
        best=BestRun(
            name=best_name,
            seed=best_run.seed,
            value=best_value,
            model_uri=best_run.model_uri,
            metrics=best_run.metrics,
            framework=best_run.framework,
            search=best_run.search,
        ),
        gate=GateVerdict.decide(metric, best_value, float(gate_min), best_name, best_run.seed),
        reference=reference,
        runs=len(results),
        all_runs=[r for name in sorted(by_name) for r in by_name[name]],
        failed=failed,
    )


def failure_lines(summary: CompareSummary) -> list[str]:
    """`big-cnn seed 0: no result (...)`, one per run left out."""
    return [f"{f.name} seed {f.seed}: {f.error}" for f in summary.failed]


def _present_metrics(results: list[EvaluationResult], metric: str) -> list[str]:
    """The metrics some run reports, catalogue order first; `metric` must be among them."""
    seen = {m for r in results for m in r.metrics}
    present = [m for m in SCALARS if m in seen] + sorted(seen - set(SCALARS))
    if metric not in present:
        raise ValueError(
            f"gate metric '{metric}' was not computed for any candidate{_requirement(metric)}; "
            f"set gate.metric to one of: {', '.join(present)}"
        )
    missing = sorted({r.name for r in results if metric not in r.metrics})
    if missing:
        raise ValueError(
            f"gate metric '{metric}' is missing for {', '.join(missing)}; choose a metric every "
            "candidate reports (e.g. accuracy)"
        )
    return present


def _requirement(metric: str) -> str:
    """Why an evaluation may leave `metric` out (the catalogue's class-count bounds)."""
    known = METRICS.get(metric)
    if known is None:
        return " (it is not a metric of the catalogue)"
    if known.max_classes is not None:
        return f" (it needs at most {known.max_classes} classes)"
    if known.min_classes > 2:
        return f" (it needs at least {known.min_classes} classes)"
    return ""


def _row(name: str, runs: list[EvaluationResult], present: list[str]) -> CandidateRow:
    runs.sort(key=lambda r: r.seed)
    stats = {}
    for m in present:
        values = [r.metrics[m] for r in runs if m in r.metrics]
        if values:
            stats[m] = mean_std(values)
    return CandidateRow(
        name=name,
        framework=runs[0].framework,
        seeds=len(runs),
        seed_list=[r.seed for r in runs],
        rank=0,
        metrics=stats,
    )


def _cell(stats: Stats | None, seeds: int) -> str:
    if stats is None:
        return ""
    return f"{stats.mean:.4f} ± {stats.std:.4f}" if seeds > 1 else f"{stats.mean:.4f}"


def _heading(metric: str) -> str:
    return metric + (" ↓" if metric in LOWER_IS_BETTER else "")


def to_markdown(summary: CompareSummary) -> str:
    """The candidate table (mean ± std over seeds), the best run and the gate verdict."""
    metrics = summary.shown_metrics(TABLE_METRICS)
    best = summary.best
    lines = [
        f"### Candidates ranked by {summary.metric} (test set)",
        "",
        "| rank | candidate | framework | seeds | " + " | ".join(map(_heading, metrics)) + " |",
        "|---:|---|---|---:|" + "---:|" * len(metrics),
    ]
    for row in summary.rows:
        cells = [_cell(row.metrics.get(m), row.seeds) for m in metrics]
        name = f"**{row.name}**" if row.name == best.name else row.name
        lines.append(
            f"| {row.rank} | {name} | {row.framework} | {row.seeds} | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        f"{STD_NOTE} ↓: lower is better.",
        "",
        f"Best run: {best.name} seed {best.seed}, {summary.metric} {best.value:.4f}.",
        "",
        summary.gate.message,
    ]
    if summary.failed:
        lines += ["", "Failed runs, left out of the comparison:", ""]
        lines += [f"- {line}" for line in failure_lines(summary)]
    reference = summary.reference
    if reference:
        ours = best.metrics.get(reference.metric)
        versus = (
            f" (best run: {ours:.4f}, {ours - reference.value:+.4f})" if ours is not None else ""
        )
        lines.append("")
        lines.append(f"Reference {reference.metric}: {reference.value:.4f}{versus}")
    return "\n".join(lines) + "\n"


BAR_STYLE = """<style>
td{white-space:nowrap}
.bars td{border:none;padding:3px 8px}
.bar{position:relative;width:420px;height:16px;background:#f6f8fa;border:1px solid #d0d7de}
.bar .fill{position:absolute;left:0;top:0;bottom:0;background:#4c72b0}
.bar .fill.best{background:#1a7f37}
.bar .err{position:absolute;top:6px;height:2px;background:#1f2328}
.bar .err::before,.bar .err::after{content:"";position:absolute;top:-4px;width:2px;height:10px;background:#1f2328}
.bar .err::before{left:0}.bar .err::after{right:0}
</style>"""


def _bar_chart(summary: CompareSummary) -> str:
    """The ranking metric per candidate: a bar to the mean with a whisker of +- one std over
    seeds, on an axis zoomed to the values (plain HTML, so the step needs no plotting library)."""
    metric = summary.metric
    rows = [row for row in summary.rows if metric in row.metrics]
    low = min(row.metrics[metric].mean - row.metrics[metric].std for row in rows)
    high = max(row.metrics[metric].mean + row.metrics[metric].std for row in rows)
    margin = max((high - low) * 0.25, 0.005)
    start = max(low - margin, 0.0) if low >= 0 else low - margin
    span = (high + margin) - start

    def at(value: float) -> float:
        return 100 * (value - start) / span

    lines = []
    for row in rows:
        mean, std = row.metrics[metric].mean, row.metrics[metric].std
        best = " best" if row.name == summary.best.name else ""
        bar = (
            f"<div class='bar'><span class='fill{best}' style='width:{at(mean):.1f}%'></span>"
            + (
                f"<span class='err' style='left:{at(mean - std):.1f}%;"
                f"width:{at(mean + std) - at(mean - std):.1f}%'></span>"
                if std
                else ""
            )
            + "</div>"
        )
        value = f"{mean:.4f}" + (f" ± {std:.4f}" if row.seeds > 1 else "")
        lines.append(f"<tr><td>{html.escape(row.name)}</td><td>{bar}</td><td>{value}</td></tr>")
    return (
        BAR_STYLE
        + f"<p class='muted'>{html.escape(metric)}, test set; the axis starts at {start:.4f}.</p>"
        + "<table class='bars'>"
        + "".join(lines)
        + "</table>"
    )


def _report_links(name: str, seed: int) -> html.Markup:
    return html.Markup(
        f'<a href="{html.escape(evaluation_report(name, seed))}">evaluation</a> · '
        f'<a href="{html.escape(curves_report(name, seed))}">curves</a>'
    )


def write_html(summary: CompareSummary, path: str | Path) -> Path:
    """The candidate table and chart, every run's metrics with links to its reports (beside
    this one in a local run's results folder), the best run and the gate verdict as HTML."""
    metrics = summary.shown_metrics(TABLE_METRICS)
    best = summary.best
    rows = []
    for row in summary.rows:
        name = html.Markup(f"<b>{html.escape(row.name)}</b>") if row.name == best.name else row.name
        rows.append(
            [
                row.rank,
                name,
                row.framework,
                row.seeds,
                *(_cell(row.metrics.get(m), row.seeds) for m in metrics),
            ]
        )
    runs = [
        [
            r.name,
            r.seed,
            *(f"{r.metrics[m]:.4f}" if m in r.metrics else "" for m in metrics),
            "best" if (r.name, r.seed) == (best.name, best.seed) else "",
            _report_links(r.name, r.seed),
        ]
        for r in summary.all_runs
    ]
    css = "ok" if summary.gate.passed else "bad"
    headings = list(map(_heading, metrics))
    sections = [
        "<h2>Candidates (mean over seeds)</h2>",
        _bar_chart(summary),
        html.table(["rank", "candidate", "framework", "seeds", *headings], rows),
        f"<p class='muted'>{html.escape(STD_NOTE)} ↓: lower is better.</p>",
        f"<p>Best run: <b>{html.escape(best.name)}</b> seed {best.seed}, "
        f"{html.escape(summary.metric)} {best.value:.4f}.</p>",
        f"<p class='{css}'>{html.escape(summary.gate.message)}</p>",
    ]
    reference = summary.reference
    if reference:
        ours = best.metrics.get(reference.metric)
        versus = (
            f"; best run {ours:.4f} ({ours - reference.value:+.4f})" if ours is not None else ""
        )
        sections.append(
            f"<p>Reference {html.escape(reference.metric)}: {reference.value:.4f}{versus}</p>"
        )
    if runs:
        sections += [
            "<h2>Every run</h2>",
            html.table(["candidate", "seed", *headings, "", "reports"], runs),
        ]
    if summary.failed:
        sections += [
            "<h2>Failed runs</h2><p class='bad'>Left out of the comparison "
            "(compare.on_failure: continue); the failed task's log says why.</p>",
            # errors are long: they wrap, unlike the figures of the tables above
            "<style>.failed td,.failed th{text-align:left;white-space:normal}</style>"
            "<div class='failed'>"
            + html.table(
                ["candidate", "seed", "why"],
                [[f.name, f.seed, f.error] for f in summary.failed],
            )
            + "</div>",
        ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html.page(f"Candidates by {summary.metric}", sections), encoding="utf-8")
    return path
