"""Training-curves HTML artifact (loss and every metric per epoch)."""

from __future__ import annotations

from pathlib import Path

from components.common import html


def write_curves_report(history: dict[str, list[float]], title: str, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = sorted({name.removeprefix("val_") for name in history if name != "learning_rate"})
    sections = []
    if metrics:
        figure, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
        for axis, metric in zip(axes[0], metrics, strict=True):
            for name, style in ((metric, "-"), (f"val_{metric}", "--")):
                if name in history:
                    values = history[name]
                    axis.plot(range(1, len(values) + 1), values, style, marker=".", label=name)
            axis.set_xlabel("epoch")
            axis.set_title(metric)
            axis.grid(alpha=0.3)
            axis.legend()
        sections.append(html.image_tag(html.figure_to_data_uri(figure), "training curves"))
    epochs = max((len(v) for v in history.values()), default=0)
    names = sorted(history)
    rows = [
        [epoch + 1, *(f"{history[n][epoch]:.4f}" if epoch < len(history[n]) else "" for n in names)]
        for epoch in range(epochs)
    ]
    sections.append("<h2>Per epoch</h2>" + html.table(["epoch", *names], rows))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html.page(title, sections))
    return path
