"""The ingest HTML data report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components.common import html
from components.common.dataset import SPLITS


def write_data_report(info: dict[str, Any], path: str | Path) -> Path:
    rows = [[name, *(info["counts"][s][name] for s in SPLITS)] for name in info["class_names"]]
    rows.append([html.Markup("<b>total</b>"), *(info["num_examples"][s] for s in SPLITS)])
    sections = [
        f"<p>Source <code>{html.escape(info['source'])}</code>: {info['seen']} items seen, "
        f"{info['kept']} kept, {info['quarantined']} quarantined, {info['converted']} converted. "
        f"Fingerprint <code>{info['fingerprint'][:16]}</code>.</p>",
        "<h2>Images per split and class</h2>" + html.table(["class", *SPLITS], rows),
    ]
    if info["quarantine_reasons"]:
        sections.append("<h2>Quarantine reasons</h2>" + html.table(["reason", "items"], sorted(info["quarantine_reasons"].items())))
    if info["excluded_by_config"]:
        sections.append("<h2>Excluded by the config</h2>" + html.table(["rule", "items"], sorted(info["excluded_by_config"].items())))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html.page("Data report", sections))
    return path
