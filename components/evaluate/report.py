"""The evaluation HTML report: headline vs reference, confusion matrix, per-class table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from components.common import html


def confusion_figure(matrix: np.ndarray, class_names: list[str]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(class_names)
    size = min(max(4.0, 0.35 * n + 2), 30.0)
    figure, axis = plt.subplots(figsize=(size, size * 0.9))
    totals = matrix.sum(axis=1, keepdims=True).clip(min=1)
    image = axis.imshow(matrix / totals, cmap="Blues", vmin=0, vmax=1)
    ticks = range(n)
    label_size = 8 if n <= 40 else 5
    axis.set_xticks(ticks, class_names, rotation=90, fontsize=label_size)
    axis.set_yticks(ticks, class_names, fontsize=label_size)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    color = "white" if matrix[i, j] / totals[i, 0] > 0.5 else "black"
                    axis.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7, color=color)
    figure.colorbar(image, ax=axis, fraction=0.046, label="row-normalised")
    return figure


def write_report(
    result: dict[str, Any],
    class_names: list[str],
    title: str,
    path: str | Path,
    reference: dict[str, Any] | None = None,
) -> Path:
    metric = (reference or {}).get("metric", "accuracy")
    headline = [[name, f"{result[name]:.4f}"] for name in ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "top5_accuracy", "log_loss") if name in result]
    sections = [f"<p>{result['examples']} test images, {len(class_names)} classes.</p>"]
    if reference:
        ours = result.get(metric)
        if ours is not None:
            gap = ours - reference["value"]
            css = "ok" if gap >= 0 else "bad"
            sections.append(
                f"<p>This run's {html.escape(metric)}: <b>{ours:.4f}</b>; reference: "
                f"{reference['value']:.4f} <span class='{css}'>({gap:+.4f})</span>"
                + (f" <span class='muted'>{html.escape(reference.get('note') or '')}</span>" if reference.get("note") else "")
                + "</p>"
            )
    sections.append("<h2>Metrics</h2>" + html.table(["metric", "value"], headline))
    matrix = np.asarray(result["confusion_matrix"])
    sections.append("<h2>Confusion matrix</h2>" + html.image_tag(html.figure_to_data_uri(confusion_figure(matrix, class_names)), "confusion matrix"))
    rows = [
        [name, f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}", c["support"]]
        for name, c in result["per_class"].items()
    ]
    sections.append("<h2>Per class</h2>" + html.table(["class", "precision", "recall", "F1", "support"], rows))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html.page(title, sections))
    return path
