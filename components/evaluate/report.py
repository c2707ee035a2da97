"""The evaluation HTML report: one self-contained file (figures and thumbnails are data URIs).

Sections: headline vs the reference, metrics, confusion matrix (readable at hundreds of classes:
an overview without cell text plus a labelled close-up of the most-confused classes), the
most-confused class pairs, a gallery of the most confidently misclassified images, the
reliability diagram, ROC / precision-recall curves for binary tasks, and the per-class table.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from components.common import html, plots
from components.common.images import thumbnail_data_uri
from components.spec import LOWER_IS_BETTER, METRIC_CATALOGUE, SCALARS

GALLERY_SIZE = 24
# Up to this many classes the whole confusion matrix is labelled; beyond it the report shows an
# unlabelled overview and a labelled close-up of the classes involved in the most confusions.
LABELLED_CLASSES = 40
CELL_TEXT_CLASSES = 20
CLOSE_UP_CLASSES = 20

DESCRIPTIONS = {m.name: m.description for m in METRIC_CATALOGUE}

REPORT_STYLE = """<style>
.t-metrics td:nth-child(3),.t-metrics th:nth-child(3),.t-pairs td:nth-child(2),.t-pairs th:nth-child(2),.t-classes td:nth-child(6),.t-classes th:nth-child(6){text-align:left}
.t-metrics td:nth-child(3){color:#656d76}
.gallery{display:flex;flex-wrap:wrap;gap:12px}
.gallery figure{margin:0;width:150px;border:1px solid #d0d7de;border-radius:6px;padding:6px;font-size:.85em}
.gallery img{width:128px;height:128px;object-fit:contain;image-rendering:pixelated;display:block;margin:0 auto;background:#f6f8fa}
.gallery .missing{width:128px;height:128px;display:flex;align-items:center;justify-content:center;margin:0 auto;background:#f6f8fa;color:#656d76;text-align:center}
.gallery figcaption{margin-top:4px;overflow-wrap:break-word;hyphens:none}
.gallery figcaption .key{overflow-wrap:anywhere}
</style>"""


@dataclass(frozen=True)
class GalleryItem:
    """One misclassified image: its Dataset key, classes, probabilities and encoded bytes."""

    key: str
    true: str
    predicted: str
    confidence: float
    true_probability: float
    image: bytes | None


# --- figures ----------------------------------------------------------------------------------


def confusion_figure(matrix: np.ndarray, class_names: Sequence[str]) -> Any:
    """Row-normalised heat map of a whole confusion matrix.

    Up to LABELLED_CLASSES every class is labelled (and up to CELL_TEXT_CLASSES every non-zero
    cell shows its count); larger matrices are drawn as an unlabelled overview with a colour
    scale that stretches small values, so scattered confusions stay visible.
    """
    from matplotlib.colors import PowerNorm

    plt = plots.pyplot()
    matrix = np.asarray(matrix)
    n = len(class_names)
    totals = matrix.sum(axis=1, keepdims=True).clip(min=1)
    normalised = matrix / totals
    labelled = n <= LABELLED_CLASSES
    size = min(max(4.0, 0.3 * n + 2.5), 14.0) if labelled else 11.0
    figure, axis = plt.subplots(figsize=(size, size * 0.88))
    scale: dict[str, Any] = (
        {"vmin": 0, "vmax": 1} if labelled else {"norm": PowerNorm(gamma=0.4, vmin=0, vmax=1)}
    )
    image = axis.imshow(normalised, cmap="Blues", interpolation="nearest", **scale)
    if labelled:
        label_size = 8 if n <= 20 else 6
        axis.set_xticks(range(n), class_names, rotation=90, fontsize=label_size)
        axis.set_yticks(range(n), class_names, fontsize=label_size)
    else:
        step = 10 if n <= 100 else 20 if n <= 300 else 50
        axis.set_xticks(range(0, n, step))
        axis.set_yticks(range(0, n, step))
        axis.tick_params(labelsize=8)
    axis.set_xlabel("predicted class" + ("" if labelled else " (index)"))
    axis.set_ylabel("true class" + ("" if labelled else " (index)"))
    if n <= CELL_TEXT_CLASSES:
        for i, j in zip(*np.nonzero(matrix), strict=True):
            color = "white" if normalised[i, j] > 0.5 else "black"
            axis.text(
                j,
                i,
                int(matrix[i, j]),
                ha="center",
                va="center",
                fontsize=cell_font_size(n),
                color=color,
            )
    label = "share of the true class" + ("" if labelled else " (colour scale stretched: x^0.4)")
    figure.colorbar(image, ax=axis, fraction=0.046, label=label)
    return figure


def cell_font_size(n: int) -> float:
    """Points for the counts in an n x n matrix: large for a few classes, 7 at twenty."""
    return max(7.0, min(16.0, 16 - (n - 3) * 9 / 17))


def close_up_classes(matrix: np.ndarray, limit: int = CLOSE_UP_CLASSES) -> list[int]:
    """Indices of the classes in the largest off-diagonal cells, in order of first appearance."""
    off = np.asarray(matrix).copy()
    np.fill_diagonal(off, 0)
    rows, cols = np.nonzero(off)
    chosen: list[int] = []
    for r, c in sorted(
        zip(rows.tolist(), cols.tolist(), strict=True), key=lambda rc: (-off[rc], rc)
    ):
        for index in (r, c):
            if index not in chosen and len(chosen) < limit:
                chosen.append(index)
        if len(chosen) >= limit:
            break
    return chosen


def close_up_figure(matrix: np.ndarray, class_names: Sequence[str], indices: list[int]) -> Any:
    """The confusion matrix restricted to `indices`, labelled, with counts in the cells."""
    plt = plots.pyplot()
    matrix = np.asarray(matrix)
    totals = matrix.sum(axis=1).clip(min=1)
    sub = matrix[np.ix_(indices, indices)]
    normalised = sub / totals[indices][:, None]
    k = len(indices)
    size = max(5.0, 0.42 * k + 3)
    figure, axis = plt.subplots(figsize=(size, size * 0.88))
    image = axis.imshow(normalised, cmap="Oranges", vmin=0, vmax=max(float(normalised.max()), 1e-9))
    names = [class_names[i] for i in indices]
    axis.set_xticks(range(k), names, rotation=90, fontsize=7)
    axis.set_yticks(range(k), names, fontsize=7)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    for i, j in zip(*np.nonzero(sub), strict=True):
        color = "white" if normalised[i, j] > 0.6 * normalised.max() else "black"
        axis.text(
            j, i, int(sub[i, j]), ha="center", va="center", fontsize=cell_font_size(k), color=color
        )
    figure.colorbar(image, ax=axis, fraction=0.046, label="share of the true class")
    return figure


def calibration_figure(calibration: dict[str, Any], ece: float) -> Any:
    """Reliability diagram: accuracy per confidence bin against the diagonal, and bin sizes."""
    plt = plots.pyplot()
    edges = np.asarray(calibration["edges"])
    centres = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    counts = np.asarray(calibration["count"])
    filled = counts > 0
    accuracy = np.asarray([a if a is not None else 0.0 for a in calibration["accuracy"]])
    confidence = np.asarray([c if c is not None else 0.0 for c in calibration["confidence"]])
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(5.5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    top.bar(
        centres[filled], accuracy[filled], width=width * 0.95, color="#4c78a8", label="accuracy"
    )
    top.bar(
        centres[filled],
        np.abs(confidence[filled] - accuracy[filled]),
        bottom=np.minimum(confidence[filled], accuracy[filled]),
        width=width * 0.95,
        fill=False,
        edgecolor="#e45756",
        hatch="///",
        linewidth=0.8,
        label="gap to mean confidence",
    )
    top.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="perfect calibration")
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.set_title(f"reliability diagram (ECE {ece:.4f})")
    top.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    share = counts / max(int(counts.sum()), 1)
    bottom.bar(centres, share, width=width * 0.95, color="#72b7b2")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence (top probability)")
    bottom.set_ylabel("share of images")
    return figure


def binary_curves_figure(result: dict[str, Any], class_names: Sequence[str]) -> Any:
    plt = plots.pyplot()
    roc, pr = result["roc_curve"], result["pr_curve"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4.4))
    left.plot(roc["fpr"], roc["tpr"], color="#4c78a8")
    left.plot([0, 1], [0, 1], "--", color="grey", linewidth=1)
    left.set_xlabel("false positive rate")
    left.set_ylabel("true positive rate")
    left.set_title(f"ROC (AUC {result['roc_auc']:.4f})")
    right.plot(pr["recall"], pr["precision"], color="#f58518", drawstyle="steps-post")
    right.set_xlabel("recall")
    right.set_ylabel("precision")
    right.set_title(f"precision-recall (average precision {result['pr_auc']:.4f})")
    for axis in (left, right):
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1.02)
    figure.suptitle(f"positive class: {class_names[1]}")
    return figure


# --- sections ---------------------------------------------------------------------------------


def _headline(
    result: dict[str, Any],
    class_names: Sequence[str],
    reference: dict[str, Any] | None,
    subtitle: str,
) -> str:
    parts = []
    if subtitle:
        parts.append(f"<p class='muted'>{html.escape(subtitle)}</p>")
    parts.append(
        f"<p>{result['examples']} test images, {len(class_names)} classes. "
        f"Accuracy <b>{result['accuracy']:.4f}</b>"
        + (f", top-5 accuracy {result['top5_accuracy']:.4f}" if "top5_accuracy" in result else "")
        + f", macro F1 {result['macro_f1']:.4f}.</p>"
    )
    if reference and reference.get("value") is not None:
        metric = reference.get("metric", "accuracy")
        note = (
            f" <span class='muted'>({html.escape(reference['note'])})</span>"
            if reference.get("note")
            else ""
        )
        ours = result.get(metric)
        if ours is None:
            ours_text = "not computed for this task"
        else:
            gap = ours - reference["value"]
            better = gap <= 0 if metric in LOWER_IS_BETTER else gap >= 0
            ours_text = (
                f"<b>{ours:.4f}</b> <span class='{'ok' if better else 'bad'}'>({gap:+.4f})</span>"
            )
        parts.append(
            f"<p>Reference {html.escape(metric)}: {reference['value']:.4f}{note}; "
            f"this run: {ours_text}</p>"
        )
    else:
        parts.append("<p class='muted'>The experiment states no reference result.</p>")
    return "\n".join(parts)


def _metrics_table(result: dict[str, Any]) -> str:
    rows = [
        [
            name,
            f"{result[name]:.4f}",
            DESCRIPTIONS.get(name, "") + (" (lower is better)" if name in LOWER_IS_BETTER else ""),
        ]
        for name in SCALARS
        if name in result
    ]
    return (
        "<h2>Metrics</h2><div class='t-metrics'>"
        + html.table(["metric", "value", "meaning"], rows)
        + "</div>"
    )


def _confusion_section(result: dict[str, Any], class_names: Sequence[str]) -> str:
    matrix = np.asarray(result["confusion_matrix"])
    n = len(class_names)
    parts = ["<h2 id='confusion'>Confusion matrix</h2>"]
    never = [class_names[int(i)] for i in np.flatnonzero(matrix.sum(axis=0) == 0)]
    if never:
        shown = ", ".join(html.escape(name) for name in never[:20])
        more = f" and {len(never) - 20} more" if len(never) > 20 else ""
        parts.append(
            f"<p class='bad'>Warning: the model never predicts {len(never)} of {n} classes "
            f"({shown}{more}); their recall is 0 and their precision undefined.</p>"
        )
    if n > LABELLED_CLASSES:
        parts.append(
            f"<p class='muted'>{n} classes: the overview is unlabelled (axes are class indices, "
            "rows are true classes); the close-up below names the classes involved in the most "
            "confusions.</p>"
        )
    parts.append(
        html.image_tag(
            plots.figure_to_data_uri(confusion_figure(matrix, class_names)), "confusion matrix"
        )
    )
    if n > LABELLED_CLASSES:
        indices = close_up_classes(matrix)
        if len(indices) >= 2:
            parts.append(
                f"<h3>Close-up: the {len(indices)} classes most involved in confusions</h3>"
            )
            parts.append(
                html.image_tag(
                    plots.figure_to_data_uri(close_up_figure(matrix, class_names, indices)),
                    "confusion matrix close-up of the most-confused classes",
                )
            )
    return "\n".join(parts)


def _most_confused_section(result: dict[str, Any]) -> str:
    pairs = result.get("most_confused") or []
    header = "<h2 id='most-confused'>Most-confused class pairs</h2>"
    if not pairs:
        return header + "<p>No test image was misclassified.</p>"
    rows = [
        [p["true"], p["predicted"], p["count"], f"{p['share']:.1%}", p["reverse_count"]]
        for p in pairs
    ]
    table = html.table(
        ["true class", "predicted as", "images", "share of the true class", "the other way round"],
        rows,
    )
    return f"{header}<div class='t-pairs'>{table}</div>"


def _breakable(key: str) -> str:
    """A file key that wraps after its separators (/ _ - .) rather than inside a word."""
    return re.sub(r"([/_.-])", r"\1<wbr>", html.escape(key))


def _gallery_section(gallery: Sequence[GalleryItem], errors: int) -> str:
    header = "<h2 id='gallery'>Most confidently misclassified images</h2>"
    if not gallery:
        return header + "<p>No test image was misclassified.</p>"
    figures = []
    for item in gallery:
        uri = thumbnail_data_uri(item.image)
        picture = (
            f'<img alt="{html.escape(item.key)}" src="{uri}">'
            if uri
            else "<div class='missing'>image not available</div>"
        )
        figures.append(
            "<figure class='gallery-item'>"
            + picture
            + "<figcaption>"
            + f"true: <b>{html.escape(item.true)}</b><br>"
            + f"predicted: <b class='bad'>{html.escape(item.predicted)}</b><br>"
            + f"confidence {item.confidence:.3f}; p(true) {item.true_probability:.3f}<br>"
            + f"<span class='muted key'>{_breakable(item.key)}</span>"
            + "</figcaption></figure>"
        )
    note = f"<p class='muted'>{len(gallery)} of {errors} misclassified test images, most confident first.</p>"
    return header + note + "<div class='gallery'>" + "".join(figures) + "</div>"


def _per_class_section(result: dict[str, Any], class_names: Sequence[str]) -> str:
    matrix = np.asarray(result["confusion_matrix"])
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    rows = []
    for index, name in enumerate(class_names):
        c = result["per_class"][name]
        worst = int(off[index].argmax())
        mistaken = f"{class_names[worst]} ({off[index, worst]})" if off[index, worst] else ""
        rows.append(
            (
                c["f1"],
                index,
                [
                    name,
                    f"{c['precision']:.3f}",
                    f"{c['recall']:.3f}",
                    f"{c['f1']:.3f}",
                    c["support"],
                    mistaken,
                ],
            )
        )
    rows.sort(key=lambda r: (r[0], r[1]))
    table = html.table(
        ["class", "precision", "recall", "F1", "support", "most often predicted as"],
        [r[2] for r in rows],
    )
    return (
        "<h2 id='per-class'>Per class</h2><p class='muted'>Lowest F1 first.</p>"
        f"<div class='t-classes'>{table}</div>"
    )


def write_report(
    result: dict[str, Any],
    class_names: Sequence[str],
    title: str,
    path: str | Path,
    reference: dict[str, Any] | None = None,
    gallery: Sequence[GalleryItem] = (),
    subtitle: str = "",
) -> Path:
    """Write the self-contained HTML report of one `classification_metrics` result."""
    matrix = np.asarray(result["confusion_matrix"])
    errors = int(matrix.sum() - np.trace(matrix))
    sections = [
        REPORT_STYLE,
        _headline(result, class_names, reference, subtitle),
        _metrics_table(result),
        _confusion_section(result, class_names),
        _most_confused_section(result),
        _gallery_section(gallery, errors),
        "<h2 id='calibration'>Calibration</h2>"
        + html.image_tag(
            plots.figure_to_data_uri(calibration_figure(result["calibration"], result["ece"])),
            "reliability diagram",
        ),
    ]
    if "roc_curve" in result:
        sections.append(
            "<h2 id='roc'>ROC and precision-recall</h2>"
            + html.image_tag(
                plots.figure_to_data_uri(binary_curves_figure(result, class_names)),
                "ROC and precision-recall curves",
            )
        )
    sections.append(_per_class_section(result, class_names))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html.page(title, sections), encoding="utf-8")
    return path
