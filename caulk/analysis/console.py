"""The analysis in the terminal: counts, every record left out and why, each curve's model,
the D_T law and the answers in words."""

from __future__ import annotations

import numpy as np
import pandas as pd

from caulk.analysis.answers import answer_lines
from caulk.analysis.labels import curve_label, varying_keys
from caulk.analysis.pipeline import Analysis
from caulk.analysis.report import count_line


def format_analysis(result: Analysis) -> str:
    """The console summary: counts, each failed/missing/unreadable/skipped record, the fits."""
    s = result.summary
    lines = [f"caulk analyze: {count_line(s)}"]
    for f in s["failed_jobs"]:
        lines.append(f"  failed: {f['path']}: {f['message'][:160]}")
    for m in s["missing_jobs"]:
        lines.append(f"  missing: {m} (no record)")
    for f in s["unreadable_records"]:
        lines.append(f"  unreadable: {f['path']}: {f['message'][:160]}")
    for f in s["skipped_records"]:
        lines.append(f"  skipped: {f['path']}: {f['message'][:160]}")
    for f in s["lambda_at_edge_records"]:
        lines.append(f"  λ at a grid edge: {f['path']}: {f['message']}")
    shown = varying_keys(result.fits, s["group_by"]) if len(result.fits) else []
    for _, f in result.fits.iterrows():
        lines.append(f"  {model_line(f, shown)}")
    if s["transfer_law"]:
        t = s["transfer_law"]
        lines.append(
            f"  D_T = {t['k']:.3g} n^{t['alpha']:.3f} N^{t['beta']:.3f} ({t['points']} points)"
        )
    if s.get("transfer_note"):
        lines.append(f"  D_T: {s['transfer_note']}")
    if result.answers is not None:
        ratio_table = result.ratios if result.ratios is not None else pd.DataFrame()
        lines += [f"  {line}" for line in answer_lines(result.answers, ratio_table, s["group_by"])]
        if len(ratio_table) and s.get("backbone_runs_note"):
            lines.append(f"  note: {s['backbone_runs_note']}")
    lines.append(f"  outputs in {result.out} (report.html)")
    return "\n".join(lines)


def model_line(f: pd.Series, shown: list[str]) -> str:
    """A curve's model in one console line: its name (``shown`` keys, as the report names it),
    the model, its local rate and floor with intervals."""
    name = curve_label(f.to_dict(), shown)
    if not np.isfinite(f.get("rate", np.nan)):
        return f"{name}: not fitted ({f.get('model_message') or f.get('message', '')})"
    return (
        f"{name}: {f['family']}: rate {f['rate']:.3f}{_ci(f, 'rate')} at "
        f"n={f['rate_at_n']:,.0f}, levels off at {f['asymptote']:.4f}{_ci(f, 'asymptote')} "
        f"({int(f['n_points'])} n, {int(f['n_seeds'])} seeds)"
    )


def _ci(f: pd.Series, key: str) -> str:
    lo, hi = f.get(f"{key}_lo", np.nan), f.get(f"{key}_hi", np.nan)
    return f" [{lo:.3g}, {hi:.3g}]" if np.isfinite(lo) and np.isfinite(hi) else ""
