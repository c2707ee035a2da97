"""The end-of-run summary printed by the CLI: a few sections, each from one part of the result."""

from __future__ import annotations

from typing import Any

from components.common.results import CompareSummary, RegistrationRecord
from components.compare.run import failure_lines
from components.register.champion import decision_lines
from components.register.run import champion_decision
from components.search.gain import gain, ranking_noise
from components.spec import TABLE_METRICS, SearchOutcome


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    return [
        line.format(*headers).rstrip(),
        line.format(*("-" * w for w in widths)).rstrip(),
        *(line.format(*map(str, r)).rstrip() for r in rows),
    ]


def _steps(tasks: list[dict[str, Any]]) -> list[str]:
    """One row per task: a candidate x seed iteration has its own train and evaluate rows."""
    if not tasks:
        return []
    rows = [
        [
            t.get("label", t["name"]),
            "SUCCESS" if t.get("cached") else t["status"],
            f"{t['seconds']:.1f}" if t.get("seconds") is not None else "",
            ("cached" if t.get("cached") else "ran") if "cached" in t else "",
        ]
        for t in tasks
    ]
    return ["", "steps:", *("  " + s for s in _table(["task", "status", "seconds", "cache"], rows))]


def _data(data: dict[str, Any] | None) -> list[str]:
    if not data:
        return []
    line = f"data: {data['kept']} images kept, {data['quarantined']} quarantined"
    if data.get("quarantine_csv"):
        line += f" (list: {data['quarantine_csv']})"
    return ["", line]


def _results(result: dict[str, Any]) -> list[str]:
    lines = []
    if result.get("registration"):
        record = RegistrationRecord.model_validate(result["registration"])
        note = ""
        if record.existing:
            note = " (registered before: the same model and exports)"
        elif record.same_model_as:
            note = f" (the model of {record.same_model_as}, with this run's exports)"
        lines.append(f"registered: {record.name} {record.version} at {record.path}{note}")
        decision = champion_decision(record)
        if decision is not None and not record.existing and not decision.checks:
            lines.append(f"champion: {decision.verdict}")
        elif decision is not None and not record.existing:
            lines.extend(["", "champion:", *("  " + line for line in decision_lines(decision))])
        if record.exports:
            lines.append(f"exported: {', '.join(record.exports)} (in {record.path}/export/)")
    if result.get("index"):
        lines.append(f"results: {result['index']}")
    elif result.get("run_dir"):
        lines.append(f"artifacts: {result['run_dir']}")
    return lines


def format_result(result: dict[str, Any]) -> str:
    heading = f"experiment {result['experiment']} on {result['target']}: {result['status']}"
    if result.get("seconds") is not None:
        heading += f" in {result['seconds']:.1f} s"
    lines = [heading]
    if result.get("url"):
        lines.append(f"run: {result['url']}")
    lines += _steps(result.get("tasks") or [])
    lines += _data(result.get("data"))
    if result.get("summary"):
        lines += _candidates(
            CompareSummary.model_validate(result["summary"]),
            result.get("best_model"),
            result.get("failed_runs"),
        )
    lines += _results(result)
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


def _candidates(
    summary: CompareSummary, best_model: str | None = None, failed_runs: list[str] | None = None
) -> list[str]:
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
    lines = ["", "candidates (test set, mean ± std over seeds):"]
    lines += ["  " + s for s in _table(["candidate", "framework", "seeds", *metrics], rows)]
    reference, best = summary.reference, summary.best
    if reference:
        ours = best.metrics.get(reference.metric)
        if ours is not None:
            lines.append(
                f"  best {reference.metric} {ours:.4f} vs reference {reference.value:.4f} "
                f"({ours - reference.value:+.4f})"
            )
    lines += _searches(summary)
    # the local target's lines carry each failed task's own reason
    failed = failed_runs or failure_lines(summary)
    lines += [f"  failed, left out: {line}" for line in failed]
    lines.append(f"  {summary.gate.message}")
    lines.append(f"  best model: {best_model or best.model_uri}")
    return lines


def _searches(summary: CompareSummary) -> list[str]:
    """Per searched candidate: its best trial and that trial's parameters, whether the
    validation split told the best trials apart, why rounds were left out, and the gain over
    the untuned recipe with its noise."""
    tuned: dict[str, dict[int, float]] = {}
    untuned: dict[str, dict[int, float]] = {}
    found = {}
    for run in summary.all_runs:
        if run.search is None or summary.metric not in run.metrics:
            continue
        side = untuned if run.search.untuned else tuned
        side.setdefault(run.search.study, {})[run.seed] = run.metrics[summary.metric]
        if not run.search.untuned:
            found[run.search.study] = run.search
    lines = []
    for name, search in sorted(found.items()):
        params = ", ".join(f"{k}={_value(v)}" for k, v in search.params.items())
        spread = f" ± {search.value_std:.4f}" if search.value_std is not None else ""
        over = f" over {search.folds} folds" if search.folds > 1 else ""
        lines.append(
            f"  search {name}: best of {search.trials} trials is trial {search.best_trial + 1} "
            f"({search.metric} {search.value:.4f}{spread}{over}): {params}"
        )
        ranking = ranking_noise(
            search.metric,
            search.value,
            search.runner_up,
            search.validation_examples,
            search.folds,
            pool(search),
            search.lead_se,
        )
        if ranking:
            lines.append(f"    {ranking}")
        if search.budget:
            lines.append(f"    {search.budget}")
        measured = gain(
            tuned.get(name, {}),
            untuned.get(name, {}),
            summary.metric,
            summary.higher_is_better,
            search.test_examples,
        )
        if measured is not None:
            lines.append(f"    {measured.text(summary.metric)}")
        elif not untuned.get(name):
            lines.append("    the search kept the untuned recipe: no gain to measure")
    return lines


def pool(search: SearchOutcome) -> int | None:
    """Images of train + validation, which K folds would rank the trials on."""
    if search.folds > 1:
        return search.validation_examples
    if search.train_examples is None or search.validation_examples is None:
        return None
    return search.train_examples + search.validation_examples


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
