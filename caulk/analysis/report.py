"""A self-contained HTML report: the answers in plain words, compact per-n comparison tables,
the figures (embedded PNGs), then the full fits table (wrapping, every column visible)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from caulk.analysis.labels import in_curve_order, varying_keys
from caulk.analysis.summaries import (
    Comparison,
    answer_sentences,
    comparisons,
    rate_sentences,
    ratio_sentences,
    transfer_sentence,
)
from caulk.atomic import write_atomic

_STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.4}
table{border-collapse:collapse;font-size:12px;margin:.6em 0 1.2em}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:right;vertical-align:top}
th{background:#f3f3f3}td.text,th.text{text-align:left}
table.fits{width:100%;table-layout:fixed;font-size:10.5px}
table.fits td,table.fits th{overflow-wrap:anywhere;padding:2px}
table.fits td.message{text-align:left}
table.compact caption{text-align:left;font-weight:600;padding:.2em 0}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}.warn{color:#a40}
ul.answers li{margin:.2em 0}
div.tables{display:flex;flex-wrap:wrap;gap:0 2em;align-items:flex-start}"""


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


def _items(title: str, lines: list[str]) -> str:
    if not lines:
        return ""
    body = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return f"<h3>{html.escape(title)}</h3><ul class='answers'>{body}</ul>"


def _ratio_lines(summary: dict[str, Any], ratios: pd.DataFrame | None, shown: list[str]):
    """The ratio sentences, then what their intervals leave out (``backbone_runs_note``)."""
    lines = ratio_sentences(ratios, shown) if ratios is not None else []
    note = summary.get("backbone_runs_note")
    return [*lines, note] if lines and note else lines


def _answers_section(
    summary: dict[str, Any],
    fits: pd.DataFrame,
    answers: pd.DataFrame | None,
    ratios: pd.DataFrame | None,
    transfer_law: dict | None,
) -> str:
    """The answers in plain words: n* per curve and target, ratios, the D_T law, the rates."""
    keys = list(summary["group_by"])
    shown = varying_keys(fits, keys) if len(fits) else keys[:1]
    fits, answers, ratios = (
        None if t is None else in_curve_order(t, keys, fits) for t in (fits, answers, ratios)
    )
    parts = [
        _items("Examples needed", answer_sentences(answers, shown) if answers is not None else []),
        _items("Compared with a baseline", _ratio_lines(summary, ratios, shown)),
        _items(
            "Effective data transferred", [transfer_sentence(transfer_law)] if transfer_law else []
        ),
        _items(
            "Rates (each curve's model, at its largest n)",
            rate_sentences(fits, shown) if "rate" in fits else [],
        ),
    ]
    if not any(parts):
        return ""
    return "<section id='answers'><h2>Answers</h2>" + "".join(parts) + "</section>"


def _cell(mean: float, half_width: float, best: bool) -> str:
    if not np.isfinite(mean):
        return "<td>–</td>"
    text = f"{mean:.3f}" + (f" ± {half_width:.3f}" if np.isfinite(half_width) else "")
    return f"<td><b>{text}</b></td>" if best else f"<td>{text}</td>"


def _comparison_table(c: Comparison) -> str:
    """Rows n, a column per curve: mean ± half-width, the lowest of each row in bold."""
    head = "".join(f"<th>{html.escape(str(col))}</th>" for col in c.means.columns)
    rows = []
    for n, means in c.means.iterrows():
        best = np.nanmin(means.to_numpy(float)) if means.notna().any() else np.nan
        cells = "".join(
            _cell(m, h, m == best and means.notna().sum() > 1)
            for m, h in zip(means, c.half_widths.loc[n], strict=True)
        )
        rows.append(f"<tr><th>{n:g}</th>{cells}</tr>")
    return (
        f"<table class='compact'><caption>{html.escape(c.title)}</caption>"
        f"<tr><th>n</th>{head}</tr>{''.join(rows)}</table>"
    )


def _number(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return "–" if np.isnan(value) else f"{value:.4g}"
    return html.escape(str(value))


def _column_widths(fits: pd.DataFrame, cols: list[str]) -> list[float]:
    """Percent widths for a fixed layout: ``message`` 16%, text columns 1.6 shares, numbers 1."""
    share = {c: 1.6 if fits[c].dtype == object else 1.0 for c in cols if c != "message"}
    rest = 100.0 - (16.0 if "message" in cols else 0.0)
    return [16.0 if c == "message" else rest * share[c] / sum(share.values()) for c in cols]


def _breakable(text: str) -> str:
    return html.escape(text).replace("_", "_<wbr>")


def fits_table_html(fits: pd.DataFrame) -> str:
    """The full fits table, ``message`` last: a fixed layout as wide as the page whose cells
    wrap, so that it never overflows sideways and every message can be read."""
    cols = [c for c in fits.columns if c != "message"] + (["message"] if "message" in fits else [])
    widths = "".join(f"<col style='width:{w:.2f}%'>" for w in _column_widths(fits, cols))
    head = "".join(f"<th>{_breakable(c)}</th>" for c in cols)
    rows = []
    for _, row in fits[cols].iterrows():
        cells = "".join(
            f"<td class='{'message' if c == 'message' else 'text' if isinstance(v, str) else ''}'>"
            f"{_breakable(v) if isinstance(v, str) else _number(v)}</td>"
            for c, v in row.items()
        )
        rows.append(f"<tr>{cells}</tr>")
    return (
        f"<table class='fits'><colgroup>{widths}</colgroup><tr>{head}</tr>{''.join(rows)}</table>"
    )


def _problems(summary: dict[str, Any], failed: list[dict[str, str]], missing: list[str]) -> str:
    unreadable = summary.get("unreadable_records", [])
    skipped = summary.get("skipped_records", [])
    edge = summary.get("lambda_at_edge_records", [])
    if not (failed or missing or unreadable or skipped or edge):
        return ""
    items = [
        *_warn_items("failed", failed),
        *(f"<li class='warn'>missing (no record): {html.escape(m)}</li>" for m in missing),
        *_warn_items("unreadable", unreadable),
        *_warn_items("skipped", skipped),
        *_warn_items("λ at the edge of its grid", edge),
    ]
    return (
        "<h2 class='warn'>Failed, missing, unreadable and skipped records; λ at a grid edge</h2><ul>"
        + "".join(items)
        + "</ul>"
    )


def _comparisons_section(summary: dict[str, Any], points: pd.DataFrame | None) -> str:
    if points is None or points.empty:
        return ""
    found = comparisons(points, list(summary["group_by"]), summary["metric"])
    if not found:
        return ""
    return (
        f"<h2>Comparisons: mean {html.escape(summary['metric'])} per n (± the 95% Student-t "
        "half-width over seeds; the lowest in bold)</h2><div class='tables'>"
        + "".join(_comparison_table(c) for c in found)
        + "</div>"
    )


def _ratio(q: dict[str, Any]) -> str:
    if q.get("ratio") is None:
        return "not determined"
    return f"{q['ratio']:.3g} [{q['ratio_lo']:.3g}, {q['ratio_hi']:.3g}]"


def _adaptive_round(r: dict[str, Any]) -> str:
    answers = "; ".join(
        f"E={a['target']:g}: "
        + (
            f"{_number(a['n_star'])} [{_number(a['n_star_lo'])}, {_number(a['n_star_hi'])}]"
            if a["status"] == "ok"
            else a["status"]
        )
        for a in r["answers"]
    )
    if r.get("ratios"):  # against a baseline (curve.baseline): the ratio is the answer
        answers = (
            "; ".join(
                f"E={q['target']:g}: n*(baseline) / n*(curve) {_ratio(q)}" for q in r["ratios"]
            )
            + f"; the curve's n*: {answers}"
        )
    added = sorted({n for n, _ in r["points"] + r.get("baseline_points", [])})
    return (
        f"<tr><td>{r['round']}</td><td>{len(r['points']) + len(r.get('baseline_points', []))} "
        f"(n = {', '.join(map(str, added))})</td>"
        f"<td>{r['points_so_far']}</td><td>{r['train_seconds_so_far']:.1f}</td>"
        f"<td>{html.escape(answers)}</td><td>{html.escape('; '.join(r['why']))}</td></tr>"
    )


def adaptive_section(traces: dict[str, dict[str, Any]]) -> str:
    """The report's "Adaptive" section: per adaptive job (``adaptive.json``), its question, each
    round (points added, cost so far, n* per target, the rule's choice and why) and why it
    stopped."""
    if not traces:
        return ""
    parts = ["<section id='adaptive'><h2>Adaptive curves (curve.n=auto)</h2>"]
    for where, trace in traces.items():
        spec, last = trace["spec"], trace["rounds"][-1]
        targets = ", ".join(f"{t:g}" for t in spec["targets"])
        parts.append(
            f"<h3>{html.escape(where)}</h3><p>n*(E) for E = {targets}, n in [{spec['n_lo']}, "
            f"{spec['n_hi']}], until n*_hi / n*_lo ≤ {spec['precision']:g} (at most "
            f"{spec['max_points']} points); stopped after round {last['round']}: "
            f"<b>{html.escape(str(last['stop']))}</b>.</p>"
            "<table><tr><th>round</th><th>points added</th><th>points so far</th>"
            "<th>training s so far</th><th>n* [95%]</th><th>the rule's choice</th></tr>"
            + "".join(_adaptive_round(r) for r in trace["rounds"])
            + "</table>"
        )
    return "".join(parts) + "</section>"


def write_report(
    out: Path,
    summary: dict[str, Any],
    fits: pd.DataFrame,
    figures: list[Path],
    transfer_law: dict | None,
    failed: list[dict[str, str]],
    missing: list[str],
    by_source_m: pd.DataFrame | None = None,
    *,
    answers: pd.DataFrame | None = None,
    ratios: pd.DataFrame | None = None,
    points: pd.DataFrame | None = None,
    adaptive: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Write ``report.html`` (no external files needed to view it) and return its path.

    Its order: the answers in plain words (n* per curve from ``answers``, ratios from
    ``ratios``, the D_T law, the fitted rates), the sweep's counts and problems, compact per-n
    tables of the curves in ``points`` that differ in one key only, the figures, and the full
    fits table; then the adaptive curves' traces (``adaptive``: job dir -> its
    ``adaptive.json``). Sections without data are left out.
    """
    parts = [
        f"<html><head><meta charset='utf-8'><title>caulk report</title><style>{_STYLE}</style></head><body>",
        "<h1>caulk scaling report</h1>",
        _answers_section(summary, fits, answers, ratios, transfer_law),
        f"<h2>Sweep</h2><p>{html.escape(count_line(summary))} from "
        f"{html.escape(', '.join(summary['sweep_dirs']))}; metric "
        f"<b>{html.escape(summary['metric'])}</b>; curves by "
        f"{html.escape(', '.join(summary['group_by']))}.</p>",
        _problems(summary, failed, missing),
        _comparisons_section(summary, points),
        "<h2>Figures</h2>" + "".join(_img(f) for f in figures),
        adaptive_section(adaptive or {}),
    ]
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
    parts.append("<h2>Fits: e(n) = a + b n<sup>-c</sup> (95% CIs: bootstrap over seeds)</h2>")
    parts.append(fits_table_html(fits))
    for title, table in (("Sample complexity n*(E)", answers), ("n* ratios", ratios)):
        if table is not None and not table.empty:
            intervals = html.escape(summary.get("intervals", ""))
            parts.append(f"<h2>{title}</h2><p>Intervals: {intervals}</p>")
            parts.append(fits_table_html(table.drop(columns="draws", errors="ignore")))
    parts.append("</body></html>")
    html_text = "\n".join(p for p in parts if p)
    return write_atomic(out / "report.html", lambda tmp: tmp.write_text(html_text))
