"""A self-contained HTML report: summary, figures (embedded PNGs) and tables."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import pandas as pd

_STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;color:#222}
table{border-collapse:collapse;font-size:12px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee;margin:.5em 0}.warn{color:#a40}"""


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(Path(path).name)}" src="data:image/png;base64,{data}">'


def count_line(summary: dict[str, Any]) -> str:
    """The record counts of an analysis summary, e.g. ``12 records (10 ok, 1 failed, 1 skipped),
    1 unreadable, 0 missing jobs`` (skipped: ok records that are no point of the metric's curve)."""
    s = summary
    skipped = f", {s['skipped']} skipped" if s.get("skipped") else ""
    return (
        f"{s['records']} records ({s['ok']} ok, {s['failed']} failed{skipped}), "
        f"{s['unreadable']} unreadable, {s['missing']} missing jobs"
    )


def _warn_items(kind: str, records: list[dict[str, str]]) -> list[str]:
    return [
        f"<li class='warn'>{kind}: {html.escape(f['path'])}: {html.escape(f['message'][:300])}</li>"
        for f in records
    ]


def write_report(
    out: Path,
    summary: dict[str, Any],
    fits: pd.DataFrame,
    figures: list[Path],
    transfer_law: dict | None,
    failed: list[dict[str, str]],
    missing: list[str],
    by_source_m: pd.DataFrame | None = None,
    answers: pd.DataFrame | None = None,
    ratios: pd.DataFrame | None = None,
) -> Path:
    """Write ``report.html`` (no external files needed to view it) and return its path;
    ``answers`` and ``ratios`` (sample complexity n*(E) and n* ratios) get a table each."""
    parts = [
        f"<html><head><meta charset='utf-8'><title>caulk report</title><style>{_STYLE}</style></head><body>",
        "<h1>caulk scaling report</h1>",
        f"<p>{html.escape(count_line(summary))} from {html.escape(', '.join(summary['sweep_dirs']))}; "
        f"metric <b>{html.escape(summary['metric'])}</b>; groups by {html.escape(', '.join(summary['group_by']))}.</p>",
    ]
    unreadable = summary.get("unreadable_records", [])
    skipped = summary.get("skipped_records", [])
    if failed or missing or unreadable or skipped:
        parts.append("<h2 class='warn'>Failed, missing, unreadable and skipped records</h2><ul>")
        parts += _warn_items("failed", failed)
        parts += [f"<li class='warn'>missing (no record): {html.escape(m)}</li>" for m in missing]
        parts += _warn_items("unreadable", unreadable)
        parts += _warn_items("skipped", skipped)
        parts.append("</ul>")
    parts.append("<h2>Figures</h2>" + "".join(_img(f) for f in figures))
    parts.append("<h2>Fits: e(n) = a + b n<sup>-c</sup> (95% CIs: bootstrap over seeds)</h2>")
    parts.append(fits.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="–"))
    for title, table in (("Sample complexity n*(E)", answers), ("n* ratios", ratios)):
        if table is not None and not table.empty:
            parts.append(f"<h2>{title} ({html.escape(summary.get('intervals', ''))})</h2>")
            table = table.drop(columns="draws", errors="ignore")
            parts.append(table.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="–"))
    if by_source_m is not None and not by_source_m.empty:
        parts.append(
            f"<h2>{html.escape(summary['metric'])} by source size m (columns: n; m=0 is the "
            "random initialisation; mean over seeds)</h2>"
        )
        parts.append(by_source_m.to_html(float_format=lambda v: f"{v:.3f}"))
    if transfer_law:
        parts.append(
            "<h2>Effective data transferred: D<sub>T</sub> = k n<sup>α</sup> N<sup>β</sup></h2>"
        )
        parts.append(
            pd.DataFrame([transfer_law]).to_html(index=False, float_format=lambda v: f"{v:.4g}")
        )
    parts.append("</body></html>")
    path = out / "report.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text("\n".join(parts))
    tmp.replace(path)
    return path
