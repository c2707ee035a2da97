"""The search report (HTML): trials ranked by the metric, each parameter against the metric,
and the best trial's training curves."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from components.common import html, plots
from components.common.search_summary import SearchSummary, TrialSummary
from components.search.gain import BINOMIAL_METRICS, binomial_se, ranking_noise


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def ranked(summary: SearchSummary) -> list[TrialSummary]:
    """Trials with a value, best first (ties: the earlier trial), then those without one."""
    sign = 1.0 if summary.direction == "maximize" else -1.0
    scored = sorted(
        ((t.value, t) for t in summary.trials if t.value is not None),
        key=lambda pair: (-sign * pair[0], pair[1].trial),
    )
    return [t for _, t in scored] + [t for t in summary.trials if t.value is None]


def _value(trial: TrialSummary) -> str:
    """A trial's value; with folds, the mean ± std over them."""
    if trial.value is None:
        return ""
    if trial.std is not None:
        return f"{trial.value:.4f} ± {trial.std:.4f}"
    return f"{trial.value:.4f}"


def _best_trial(summary: SearchSummary) -> int | None:
    return summary.best.trial if summary.best is not None else None


def _table(summary: SearchSummary) -> str:
    params = list(summary.space)
    folds = summary.folds
    metric = summary.metric + (f" (mean ± std, {folds} folds)" if folds > 1 else "")
    best = _best_trial(summary)
    rows = []
    for rank, trial in enumerate(ranked(summary), start=1):
        state = trial.state.lower()
        if trial.pruned_at_epoch is not None:
            state += f" (epoch {trial.pruned_at_epoch + 1})"
        number = str(trial.trial + 1)  # counted from 1, as the console and results folder do
        rows.append(
            [
                rank,
                html.Markup(f"<b>{number}</b>") if trial.trial == best else number,
                state,
                _value(trial),
                trial.epochs,
                *(_format(trial.params.get(p, "")) for p in params),
            ]
        )
    return html.table(["rank", "trial", "state", metric, "epochs", *params], rows)


def _scatter(summary: SearchSummary) -> str:
    plt = plots.pyplot()

    params = list(summary.space)
    trials = [t for t in summary.trials if t.value is not None]
    if not params or not trials:
        return ""
    columns = min(len(params), 3)
    rows = math.ceil(len(params) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    best = _best_trial(summary)
    for axis, param in zip(axes.flat, params, strict=False):
        kind = next(iter(summary.space[param]))
        values = [t.params[param] for t in trials]
        metric = [t.value for t in trials]
        if kind == "choice":
            labels = [str(c) for c in summary.space[param]["choice"]]
            xs: list[float] = [labels.index(str(v)) for v in values]
            axis.set_xticks(range(len(labels)), labels)
        else:
            xs = [float(v) for v in values]
            if kind == "log_uniform":
                axis.set_xscale("log")
        for stopped in (False, True):
            picked = [i for i, t in enumerate(trials) if (t.state == "PRUNED") == stopped]
            colors = [
                "#8c959f" if stopped else "#cf222e" if trials[i].trial == best else "#0969da"
                for i in picked
            ]
            axis.scatter(
                [xs[i] for i in picked],
                [metric[i] for i in picked],
                c=colors,
                s=36,
                alpha=0.8,
                marker="x" if stopped else "o",
            )
        axis.set_xlabel(param)
        axis.set_ylabel(summary.metric)
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(params) :]:
        axis.set_visible(False)
    figure.tight_layout()
    return html.image_tag(plots.figure_to_data_uri(figure), "parameter against metric")


def _curves(history: dict[str, list[float]]) -> str:
    plt = plots.pyplot()

    metrics = sorted({n.removeprefix("val_") for n in history if n != "learning_rate"})
    if not metrics:
        return "<p class='muted'>The best trial recorded no curves.</p>"
    figure, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.4), squeeze=False)
    for axis, metric in zip(axes[0], metrics, strict=True):
        for name, style in ((metric, "-"), (f"val_{metric}", "--")):
            if name in history:
                axis.plot(
                    range(1, len(history[name]) + 1), history[name], style, marker=".", label=name
                )
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    return html.image_tag(plots.figure_to_data_uri(figure), "best trial's training curves")


def ranking_lines(summary: SearchSummary | dict[str, Any], examples: dict[str, int]) -> list[str]:
    """What the trials were ranked on (images, folds), the metric's standard error there, and
    whether that tells the best trial from the next one (`examples`: images per split)."""
    summary = SearchSummary.model_validate(summary)
    best = summary.best
    folds = summary.folds
    validation = int(examples.get("validation", 0))
    pool = validation + int(examples.get("train", 0))
    ranked = pool if folds > 1 else validation
    if not ranked:
        return []
    where = (
        f"{folds} folds of train + validation: each of its {ranked} images validates once"
        if folds > 1
        else f"the validation split's {ranked} images"
    )
    lines = [f"Trials ranked on {where}."]
    if best is None or summary.metric not in BINOMIAL_METRICS:
        return lines
    lines[0] = lines[0][:-1] + (
        f"; the standard error of {summary.metric} near the best value is "
        f"±{binomial_se(best.value, ranked):.4f}."
    )
    noise = ranking_noise(
        summary.metric, best.value, best.runner_up, ranked, folds, pool, best.lead_se
    )
    if noise:
        lines.append(noise[0].upper() + noise[1:] + ".")
    return lines


def write_report(
    summary: SearchSummary | dict[str, Any],
    path: str | Path,
    examples: dict[str, int] | None = None,
) -> Path:
    """The search report of one study's summary (`components.search.trials.summarize`);
    `examples` (images per split) judge the noise of the ranking."""
    summary = SearchSummary.model_validate(summary)
    best = summary.best
    finished = sum(t.state == "COMPLETE" for t in summary.trials)
    pruned = sum(t.state == "PRUNED" for t in summary.trials)
    skipped = sum(t.state == "SKIPPED" for t in summary.trials)
    goal = "highest" if summary.direction == "maximize" else "lowest"
    left_out = f", {skipped} skipped: the time budget was spent" if skipped else ""
    folds = summary.folds
    objective = (
        f"mean over {folds} folds of each fold's {goal} {html.escape(summary.metric)} over "
        "its epochs"
        if folds > 1
        else f"{goal} {html.escape(summary.metric)} over a trial's epochs (validation split)"
    )
    sections = [
        f"<p>{len(summary.trials)} trials ({finished} finished, {pruned} stopped early"
        f"{left_out}), algorithm {html.escape(summary.algorithm)}; the objective is the "
        f"{objective}.</p>",
    ]
    if summary.max_minutes is not None:
        sections.append(
            f"<p>Time budget {summary.max_minutes:g} min; the rounds took "
            f"{summary.spent_minutes:.1f} min."
            + (f" {html.escape(summary.budget)}." if summary.budget else "")
            + "</p>"
        )
    if best is not None:
        params = ", ".join(f"{k} = {_format(v)}" for k, v in best.params.items())
        spread = f" ± {best.std:.4f}" if best.std is not None else ""
        sections.append(
            f"<p class='ok'>Best: trial {best.trial + 1}, {html.escape(summary.metric)} "
            f"{best.value:.4f}{spread}: {html.escape(params)}</p>"
        )
    sections += [f"<p>{html.escape(line)}</p>" for line in ranking_lines(summary, examples or {})]
    space = [
        [p, next(iter(d)), ", ".join(map(_format, next(iter(d.values()))))]
        for p, d in summary.space.items()
    ]
    sections += [
        "<h2>Trials, best first</h2>",
        _table(summary),
        "<h2>Each parameter against the metric</h2>",
        "<p class='muted'>Red: the best trial; grey crosses: trials stopped early (their best "
        "value before the stop).</p>",
        _scatter(summary),
        "<h2>Search space</h2>",
        html.table(["parameter", "distribution", "range or values"], space),
    ]
    if best is not None:
        sections += [
            f"<h2>Best trial's curves (trial {best.trial + 1})</h2>",
            _curves(best.history),
        ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html.page(f"Search: {summary.study}", sections), encoding="utf-8")
    return path
