"""Training-curves HTML artifact (loss and every metric per epoch, best and early-stop epochs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components.common import html, plots


def _mark_epochs(axis: Any, outcome: dict[str, Any]) -> None:
    best = outcome.get("best_epoch")
    if best:
        axis.axvline(
            best, color="#1a7f37", linestyle=":", linewidth=1.2, label=f"best epoch {best}"
        )
    if outcome.get("stopped_early"):
        stopped = outcome["epochs_run"]
        axis.axvline(
            stopped, color="#cf222e", linestyle=":", linewidth=1.2, label=f"stopped at {stopped}"
        )


def _outcome_text(outcome: dict[str, Any]) -> str:
    if not outcome.get("best_epoch"):
        return ""
    text = (
        f"Best {html.escape(outcome['monitor'])} {outcome['best_value']:.4f} at epoch "
        f"{outcome['best_epoch']}; the model keeps that epoch's weights."
    )
    if outcome.get("stopped_early"):
        text = (
            f"Early stopping ended training at epoch {outcome['epochs_run']} of "
            f"{outcome['planned_epochs']}. " + text
        )
    else:
        text = f"Trained all {outcome['epochs_run']} epochs. " + text
    return f"<p>{text}</p>"


def write_curves_report(
    history: dict[str, list[float]],
    title: str,
    path: str | Path,
    outcome: dict[str, Any] | None = None,
) -> Path:
    from matplotlib.ticker import MaxNLocator

    plt = plots.pyplot()

    outcome = outcome or {}
    metrics = sorted({name.removeprefix("val_") for name in history if name != "learning_rate"})
    sections = [_outcome_text(outcome)]
    if metrics:
        figure, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
        for axis, metric in zip(axes[0], metrics, strict=True):
            for name, style in ((metric, "-"), (f"val_{metric}", "--")):
                if name in history:
                    values = history[name]
                    axis.plot(range(1, len(values) + 1), values, style, marker=".", label=name)
            _mark_epochs(axis, outcome)
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
            axis.set_xlabel("epoch")
            axis.set_title(metric)
            axis.grid(alpha=0.3)
            axis.legend(fontsize="small")
        sections.append(html.image_tag(plots.figure_to_data_uri(figure), "training curves"))
    epochs = max((len(v) for v in history.values()), default=0)
    names = sorted(history)
    best = outcome.get("best_epoch")
    rows = [
        [
            f"{epoch + 1} (best)" if epoch + 1 == best else epoch + 1,
            *(f"{history[n][epoch]:.4g}" if epoch < len(history[n]) else "" for n in names),
        ]
        for epoch in range(epochs)
    ]
    sections.append("<h2>Per epoch</h2>" + html.table(["epoch", *names], rows))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html.page(title, sections))
    return path
