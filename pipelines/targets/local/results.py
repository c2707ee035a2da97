"""A local run's results folder: `runs/<experiment>/<run>/` with index.html, the reports under
names people read, per-task logs, `<candidate>-seed<k>` links to each training's outputs (a
search trial's: `<candidate>-trial<n>`, with folds `<candidate>-trial<n>-fold<k>`), the TensorBoard event files of every training, and
`runs/<experiment>/latest` pointing at it.

Cached tasks' outputs live in the earlier run that produced them; their reports and event files
are copied here, so every run's folder holds every result it reports.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.common import html
from components.common.files import read_json, write_json
from components.common.names import (
    COMPARISON_REPORT,
    DATA_REPORT,
    EXPORT_REPORT,
    INDEX,
    TENSORBOARD_DIR,
    curves_report,
    evaluation_report,
    run_name,
)
from components.common.results import (
    DATASET_INFO_FILE,
    ChampionDecision,
    DatasetInfo,
)
from pipelines.failures import failure
from pipelines.targets.local.tasks import TaskRecord

LATEST = "latest"
QUARANTINE_CSV = "quarantine.csv"
# Each task's time in the run that ran it, by task slug: a later run that takes the task from
# the cache reports that time (marked cached) instead of 0 s.
TASKS_FILE = "tasks.json"


@dataclass
class Verdict:
    """What index.html heads with: how the run ended, its time, what it registered."""

    status: str  # SUCCEEDED, PARTIAL, FAILED, STOPPED, GATE MISSED
    seconds: float
    registered: str | None = None  # `digits-classifier v3 at runs/registry/...`
    gate: str | None = None  # the gate's message
    error: str | None = None
    error_log: str | None = None  # the full log of the step that failed
    failed_runs: list[str] = field(default_factory=list)  # compare.on_failure: continue
    champion: ChampionDecision | None = None  # the registered version against the champion


@dataclass
class Results:
    run_dir: Path
    index: Path
    reports: list[Path] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    tensorboard: Path | None = None
    data: dict[str, Any] = field(default_factory=dict)  # kept, quarantined, quarantine CSV


def _uri(record: TaskRecord, output: str) -> Path | None:
    artifact = record.outputs.get(output)
    uri = getattr(artifact, "uri", None)
    return Path(uri) if uri else None


def _card_outcome(record: TaskRecord) -> dict[str, Any]:
    model = _uri(record, "model")
    card = model / "model_card.json" if model else None
    if card is None or not card.is_file():
        return {}
    return dict(read_json(card).get("training", {}).get("outcome") or {})


def training_figure(outcome: dict[str, Any]) -> str:
    """`best val_accuracy 0.987 at epoch 14 (stopped early at 22)`."""
    if not outcome.get("best_epoch"):
        return ""
    text = f"best {outcome['monitor']} {outcome['best_value']:.4f} at epoch {outcome['best_epoch']}"
    if outcome.get("stopped_early"):
        return text + f" (stopped early at {outcome['epochs_run']})"
    return text + f" (of {outcome['epochs_run']})"


def failed_run_line(record: TaskRecord) -> str:
    """`broken seed 0 failed in train: ValueError: ...` of a failed task the run went on past
    (compare.on_failure: continue), its reason read from the task's log."""
    reason = failure(record.label, record.log, "see its log")
    told = f"{reason.exception}: {reason.message}" if reason.exception else reason.message
    return f"{record.candidate} seed {record.seed} failed in {record.step}: {told}"


def task_figure(record: TaskRecord) -> str:
    """The one figure a task's console line ends with."""
    if record.goes_on:
        return failed_run_line(record).split(": ", 1)[1]
    if record.status != "SUCCESS":
        return ""
    if record.name.startswith("train"):
        return training_figure(_card_outcome(record))
    if record.name.startswith("evaluate"):
        result = record.outputs.get("Output")
        if isinstance(result, dict) and "accuracy" in result.get("metrics", {}):
            return f"test accuracy {result['metrics']['accuracy']:.4f}"
    if record.name == "ingest":
        data = data_counts(record)
        if data:
            return f"{data['kept']} images kept, {data['quarantined']} quarantined"
    if record.name.startswith("track") and isinstance(record.outputs.get("Output"), str):
        return str(record.outputs["Output"])  # what was recorded, or the tracking warning
    if record.name == "gate" and isinstance(record.outputs.get("Output"), str):
        return str(record.outputs["Output"])
    return ""


def data_counts(record: TaskRecord) -> dict[str, Any]:
    """Images kept and quarantined, and classes, from the ingest task's Dataset."""
    dataset = _uri(record, "dataset")
    if dataset is None or not (dataset / DATASET_INFO_FILE).is_file():
        return {}
    info = DatasetInfo.read(dataset)
    return {"kept": info.kept, "quarantined": info.quarantined, "classes": info.num_classes}


def _report_names(record: TaskRecord) -> dict[str, str]:
    """HTML output -> the name it gets in the results folder."""
    if record.name == "ingest":
        return {"report": DATA_REPORT}
    if record.name.startswith("compare"):
        return {"report": COMPARISON_REPORT}
    if record.name.startswith("export"):
        return {"report": EXPORT_REPORT}
    if record.candidate is not None and record.seed is not None:
        if record.name.startswith("train"):
            return {
                "curves": curves_report(record.candidate, record.seed, record.trial, record.fold)
            }
        if record.name.startswith("evaluate"):
            return {"report": evaluation_report(record.candidate, record.seed)}
    return {
        name: f"{record.slug}-{name}.html"
        for name, artifact in record.outputs.items()
        if getattr(artifact, "schema_title", "") == "system.HTML"
    }


def _link(link: Path, target: Path) -> None:
    """A relative symlink `link` -> `target`, replacing an earlier one."""
    temporary = link.with_name(f".{link.name}.tmp")
    if temporary.is_symlink() or temporary.exists():
        temporary.unlink()
    temporary.symlink_to(os.path.relpath(target, link.parent))
    os.replace(temporary, link)


def _copy_tensorboard(record: TaskRecord, run_dir: Path) -> Path | None:
    """A training's event files, under `tensorboard/<candidate>-seed<k>/` of this run."""
    model = _uri(record, "model")
    source = model.parent / TENSORBOARD_DIR if model else None
    if source is None or not source.is_dir() or record.candidate is None or record.seed is None:
        return None
    name = run_name(record.candidate, record.seed, record.trial, record.fold)
    target = run_dir / TENSORBOARD_DIR / name
    if source.resolve() != target.resolve():
        shutil.copytree(source, target, dirs_exist_ok=True)
    return target


def write_results(
    run_dir: Path, experiment: str, tasks: list[TaskRecord], verdict: Verdict | None = None
) -> Results:
    """Lay out the results folder of the run whose tasks are `tasks`; index.html heads with
    `verdict`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    results = Results(run_dir=run_dir, index=run_dir / INDEX)
    rows = []
    for record in tasks:
        for output, name in _report_names(record).items():
            source = _uri(record, output)
            if source is not None and source.is_file():
                shutil.copyfile(source, run_dir / name)
                results.reports.append(run_dir / name)
        if record.name == "ingest":
            results.data = data_counts(record)
            quarantine = _uri(record, "quarantine")
            if quarantine is not None and quarantine.is_file():
                shutil.copyfile(quarantine, run_dir / QUARANTINE_CSV)
                results.data["quarantine_csv"] = str(run_dir / QUARANTINE_CSV)
        outputs = None
        if record.name.startswith("train") and record.candidate is not None:
            model = _uri(record, "model")
            if model is not None and record.seed is not None and model.parent.parent.is_dir():
                outputs = run_dir / run_name(
                    record.candidate, record.seed, record.trial, record.fold
                )
                if outputs.resolve() != model.parent.parent.resolve():
                    _link(outputs, model.parent.parent)
            if _copy_tensorboard(record, run_dir) is not None:
                results.tensorboard = run_dir / TENSORBOARD_DIR
        elif record.candidate is not None and record.seed is not None:
            # an evaluate: its outputs sit beside its training's, behind the same link
            linked = run_dir / run_name(record.candidate, record.seed)
            outputs = linked if linked.is_dir() else None
        log = record.log if record.log and record.log.is_file() else _earlier_log(record)
        if log is not None:
            results.logs.append(log)
        rows.append(_index_row(record, run_dir, log, outputs))
    results.index.write_text(_index_page(experiment, run_dir, results, rows, verdict))
    write_json(
        run_dir / TASKS_FILE,
        {
            t.slug: {
                "seconds": None if t.ran_seconds is None else round(t.ran_seconds, 2),
                "inputs": t.inputs,
            }
            for t in tasks
        },
    )
    _link(run_dir.parent / LATEST, run_dir)
    return results


def earlier_seconds(record: TaskRecord) -> float | None:
    """How long a cached task took in the run that ran it (its tasks.json), if known: the run
    its output artifacts lie in, else (a task with no artifact output, such as the gate) the
    latest earlier run of the experiment that ran it on the same inputs."""
    for artifact in record.outputs.values():
        uri = getattr(artifact, "uri", None)
        if not uri:
            continue
        for parent in Path(uri).parents:
            if parent == record.run_dir.parent:
                break
            if (parent / TASKS_FILE).is_file():
                return _seconds(read_json(parent / TASKS_FILE).get(record.slug))
    earlier = [
        path
        for path in record.run_dir.parent.glob(f"*/{TASKS_FILE}")
        if path.parent != record.run_dir
    ]
    for path in sorted(earlier, key=lambda p: p.stat().st_mtime, reverse=True):
        entry = read_json(path).get(record.slug)
        if entry and record.inputs and entry.get("inputs") == record.inputs:
            found = _seconds(entry)
            if found is not None:
                return found
    return None


def _seconds(entry: dict[str, Any] | None) -> float | None:
    return float(entry["seconds"]) if entry and entry.get("seconds") is not None else None


def _earlier_log(record: TaskRecord) -> Path | None:
    """A cached task's log, in the run folder that ran it."""
    for artifact in record.outputs.values():
        uri = getattr(artifact, "uri", None)
        if not uri:
            continue
        path = Path(uri)
        for parent in path.parents:
            log = parent / "logs" / f"{record.slug}.log"
            if log.is_file():
                return log
            if parent == record.run_dir.parent:
                break
    return None


def _href(path: Path, run_dir: Path) -> str:
    return html.escape(os.path.relpath(path, run_dir))


def _index_row(record: TaskRecord, run_dir: Path, log: Path | None, outputs: Path | None) -> list:
    cache = "cached" if record.cached else ("ran" if record.status != "RUNNING" else "")
    seconds = record.ran_seconds
    return [
        record.number,
        record.label,
        record.status,
        f"{seconds:.1f}" if seconds is not None else "",
        cache,
        record.figure,
        html.Markup(f'<a href="{_href(log, run_dir)}">log</a>') if log else "",
        html.Markup(f'<a href="{_href(outputs, run_dir)}/">{html.escape(outputs.name)}</a>')
        if outputs
        else "",
    ]


# What each kind of report shows, by the start of its name.
REPORT_KINDS = {
    DATA_REPORT: "the data: images per split and class, quarantine, sizes, samples",
    "curves-": "training curves, best and early-stop epochs",
    "evaluation-": "test metrics, confusion matrix, worst errors, calibration",
    COMPARISON_REPORT: "every candidate x seed compared, the gate's verdict",
    EXPORT_REPORT: "the best model's exports, measured",
}
INDEX_STYLE = "<style>.tasks td,.tasks th{text-align:left}</style>"


def _report_item(path: Path, run_dir: Path) -> str:
    kind = next((text for start, text in REPORT_KINDS.items() if path.name.startswith(start)), "")
    note = f' <span class="muted">{html.escape(kind)}</span>' if kind else ""
    return f'<li><a href="{_href(path, run_dir)}">{html.escape(path.name)}</a>{note}</li>'


def _verdict_section(verdict: Verdict, run_dir: Path) -> str:
    """The run's outcome first: verdict and time, what was registered, why it failed."""
    css = "ok" if verdict.status == "SUCCEEDED" else "bad"
    lines = [
        f'<p class="verdict"><span class="{css}">{html.escape(verdict.status)}</span> '
        f"in {verdict.seconds:.1f} s</p>"
    ]
    if verdict.registered:
        lines.append(f"<p>registered: <b>{html.escape(verdict.registered)}</b></p>")
    elif verdict.status != "STOPPED":
        lines.append('<p class="muted">nothing registered</p>')
    if verdict.gate:
        lines.append(f"<p>{html.escape(verdict.gate)}</p>")
    if verdict.champion is not None:
        lines.append(_champion_section(verdict.champion))
    if verdict.failed_runs:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in verdict.failed_runs)
        lines.append(f'<p class="bad">failed runs, left out of the comparison:</p><ul>{items}</ul>')
    if verdict.error:
        lines.append(f'<pre class="error">{html.escape(verdict.error)}</pre>')
    if verdict.error_log:
        href = _href(Path(verdict.error_log), run_dir)
        lines.append(f'<p>full log of the failed step: <a href="{href}">{href}</a></p>')
    return VERDICT_STYLE + '<div class="head">' + "".join(lines) + "</div>"


def _points(value: float | None) -> str:
    return "" if value is None else f"{100 * value:+.1f}"


def _champion_section(decision: ChampionDecision) -> str:
    """The champion decision: the verdict in words, then one row per check."""
    css = "ok" if decision.promoted else "bad"
    verdict = "promoted" if decision.promoted else "not promoted"
    head = f'<p>champion: <b class="{css}">{verdict}</b>: {html.escape(decision.reason)}</p>'
    if not decision.checks:
        return head
    rows = []
    for check in decision.checks:
        interval = (
            f"[{_points(check.low)}, {_points(check.high)}] points"
            if check.low is not None and check.high is not None
            else ""
        )
        mark = '<span class="ok">ok</span>' if check.passed else '<span class="bad">failed</span>'
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(cell)}</td>"
                for cell in (
                    check.check,
                    f"{check.champion:.4f}",
                    f"{check.challenger:.4f}",
                    f"{check.difference:+.4f}",
                    interval,
                    check.limit,
                )
            )
            + f"<td>{mark}</td></tr>"
        )
    champion_only, challenger_only = (decision.discordant + [0, 0])[:2]
    shown = sum(1 for c in decision.checks if c.check.startswith("recall ") and not c.passed)
    hidden = (
        f'<p class="muted">and {decision.classes_below - shown} more classes whose recall fell '
        "past the tolerance</p>"
        if decision.classes_below > shown
        else ""
    )
    note = hidden + (
        f'<p class="muted">{decision.test_images} test images; exact McNemar p = '
        f"{decision.mcnemar_p:.3g} ({champion_only} right by the champion only, "
        f"{challenger_only} by the challenger only)</p>"
        if decision.mcnemar_p is not None
        else ""
    )
    headers = "".join(
        f"<th>{h}</th>"
        for h in (
            "check",
            f"champion {html.escape(decision.champion or '')}",
            "challenger",
            "difference",
            "interval",
            "limit",
            "",
        )
    )
    return head + f'<table class="tasks champion"><tr>{headers}</tr>{"".join(rows)}</table>' + note


VERDICT_STYLE = (
    "<style>.head{border:1px solid #d0d7de;padding:4px 16px;margin:8px 0}"
    ".verdict{font-size:1.3em}pre.error{white-space:pre-wrap;background:#fff1f0;"
    "border:1px solid #ffcecb;padding:8px}</style>"
)


def _index_page(
    experiment: str, run_dir: Path, results: Results, rows: list, verdict: Verdict | None
) -> str:
    reports = "".join(_report_item(p, run_dir) for p in results.reports)
    sections = [
        *([_verdict_section(verdict, run_dir)] if verdict is not None else []),
        f'<p class="muted">{html.escape(run_dir.name)}</p>',
        f"<h2>Reports</h2><ul>{reports or '<li>none</li>'}</ul>",
        INDEX_STYLE
        + "<h2>Tasks</h2><div class='tasks'>"
        + html.table(["#", "task", "status", "seconds", "cache", "result", "log", "outputs"], rows)
        + "</div>",
    ]
    if results.data:
        sections.append(
            f"<h2>Data</h2><p>{results.data['kept']} images kept, "
            f"{results.data['quarantined']} quarantined"
            + (
                f' (<a href="{QUARANTINE_CSV}">{QUARANTINE_CSV}</a>)'
                if "quarantine_csv" in results.data
                else ""
            )
            + "</p>"
        )
    if results.tensorboard is not None:
        sections.append(
            "<h2>TensorBoard</h2><p><code>tensorboard --logdir "
            f"{html.escape(str(run_dir.parent / LATEST))}</code></p>"
        )
    return html.page(f"Run of {experiment}", sections)
