"""The report's plain words and compact tables: n* per curve, ratios, D_T, rates, and the
seed-mean error per n of the curves that differ in one key only (linear vs LoRA, an m sweep)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from caulk.analysis.fits import seed_means
from caulk.analysis.labels import (
    curve_label,
    in_curve_order,
    key_text,
    sort_key,
    value_text,
    varying_keys,
)

#: the keys a comparison table varies, one at a time, all other keys held fixed
COMPARED_KEYS = ("peft", "source_m", "peft_knob_value", "weights")


def count_text(value: float) -> str:
    """An example count to three significant figures: 312, 12,300."""
    return f"{float(f'{value:.3g}'):,.0f}" if value >= 1 else f"{value:.2g}"


def _factor(value: float) -> str:
    return f"{value:.2g}" if value < 10 else f"{value:.0f}"


def _curve(row: pd.Series, shown: list[str]) -> str:
    return curve_label(row.to_dict(), shown)


def answer_sentences(answers: pd.DataFrame, shown: list[str]) -> list[str]:
    """One sentence per (curve, target): ``vit_pico · linear · m=4000 needs 310 [240, 420]
    examples for error 0.2 (avg(pow3 0.70, mmf4 0.30); extrapolated: n* is 2.1x the largest n
    measured)``; an unreachable or undeterminable target says so, with the reason."""
    lines = []
    for _, row in answers.iterrows():
        name, target = _curve(row, shown), f"{row['target']:g}"
        n_star = row.get("n_star", np.nan)
        note = row["note"] if isinstance(row.get("note"), str) else ""
        if not (pd.notna(n_star) and np.isfinite(n_star)):
            lines.append(f"{name}: no n* for error {target}" + (f" ({note})" if note else ""))
            continue
        lo, hi = row.get("n_star_lo", np.nan), row.get("n_star_hi", np.nan)
        interval = ""
        if pd.notna(lo) and pd.notna(hi):
            upper = count_text(hi) if np.isfinite(hi) else "∞"
            interval = f" [{count_text(lo)}, {upper}]"
        model = row.get("family") if isinstance(row.get("family"), str) else ""
        details = "; ".join(x for x in (model, note) if x)
        lines.append(
            f"{name} needs {count_text(n_star)}{interval} examples for error {target}"
            + (f" ({details})" if details else "")
        )
    return lines


def ratio_sentences(ratios: pd.DataFrame, shown: list[str]) -> list[str]:
    """One sentence per ratio row: ``… needs 2.3× [1.8, 2.9] fewer examples than <baseline> for
    error 0.2``; ``ratio`` is n*(baseline) / n*(curve), so a ratio under 1 reads "more"."""
    lines = []
    for _, row in ratios.iterrows():
        r, lo, hi = (row.get(k, np.nan) for k in ("ratio", "ratio_lo", "ratio_hi"))
        head = f"{_curve(row, shown)} needs"
        tail = f"examples than {row['baseline']} for error {row['target']:g}"
        if not (pd.notna(r) and np.isfinite(r) and r > 0):
            lines.append(
                f"{_curve(row, shown)} vs {row['baseline']}: no ratio for error {row['target']:g}"
            )
            continue
        fewer = r >= 1
        factor, a, b = (r, lo, hi) if fewer else (1 / r, 1 / hi, 1 / lo)
        interval = f" [{_factor(a)}, {_factor(b)}]" if np.isfinite([a, b]).all() else ""
        lines.append(f"{head} {_factor(factor)}×{interval} {'fewer' if fewer else 'more'} {tail}")
    return lines


def transfer_sentence(law: dict) -> str:
    """The D_T law in words: how the effective data transferred grows with n and N."""
    text = (
        f"Pre-training is worth D_T = {law['k']:.3g} · n^{law['alpha']:.2f}"
        + (f" · N^{law['beta']:.2f}" if np.isfinite(law.get("beta", np.nan)) else "")
        + f" extra examples (fitted on {law['points']} points): doubling n multiplies it by "
        f"{2 ** law['alpha']:.2f}"
    )
    if np.isfinite(law.get("beta", np.nan)):
        text += f", doubling the model's parameters by {2 ** law['beta']:.2f}"
    return text + "."


def rate_sentences(fits: pd.DataFrame, shown: list[str]) -> list[str]:
    """One sentence per curve, from its model (the one the answers use): the local rate at the
    largest n and the error it levels off at, with their intervals."""
    lines = []
    for _, f in fits.iterrows():
        if not np.isfinite(f.get("rate", np.nan)):
            why = f.get("model_message") or f.get("message", "")
            lines.append(f"{_curve(f, shown)}: not fitted ({why})")
            continue
        at = f.get("rate_at_n", np.nan)
        where = f" at n={count_text(at)}" if pd.notna(at) else ""
        floor = f.get("asymptote", np.nan)
        towards = (
            f", levelling off at {floor:.3g}{_ci(f, 'asymptote', '.3g')}" if pd.notna(floor) else ""
        )
        model = f" ({f['family']})" if isinstance(f.get("family"), str) and f["family"] else ""
        lines.append(
            f"{_curve(f, shown)}: error falls as n^-{f['rate']:.2f}{_ci(f, 'rate', '.2f')}"
            f"{where}{towards}{model}"
        )
    return lines


def _ci(f: pd.Series, key: str, fmt: str) -> str:
    lo, hi = f.get(f"{key}_lo", np.nan), f.get(f"{key}_hi", np.nan)
    return f" [{lo:{fmt}}, {hi:{fmt}}]" if np.isfinite([lo, hi]).all() else ""


@dataclass
class Comparison:
    """Curves that differ in one key only: seed means and interval half-widths per n."""

    title: str
    means: pd.DataFrame  # index n, a column per curve
    half_widths: pd.DataFrame


def _curve_means(points: pd.DataFrame, keys: list[str], metric: str) -> pd.DataFrame:
    rows = []
    for group, pts in points.groupby(keys, dropna=False, sort=False):
        values = dict(zip(keys, group if isinstance(group, tuple) else (group,), strict=True))
        m = seed_means(pts, metric)
        rows.append(
            m.assign(half_width=m["ci_half"], **{k: key_text(v) for k, v in values.items()})
        )
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def comparisons(points: pd.DataFrame, keys: list[str], metric: str) -> list[Comparison]:
    """Every set of curves in ``points`` that differ only in one of :data:`COMPARED_KEYS`."""
    means = in_curve_order(_curve_means(points, keys, metric), keys, sizes=points)
    if means.empty:
        return []
    shown = varying_keys(points, keys)
    out = []
    for key in (k for k in COMPARED_KEYS if k in keys and k in shown):
        rest = [k for k in keys if k != key]
        for fixed, sub in means.groupby(rest, sort=False) if rest else [((), means)]:
            values = sorted(sub[key].unique(), key=sort_key)
            if len(values) < 2:
                continue
            names = {v: value_text(key, v) for v in values}
            held = curve_label(dict(zip(rest, np.atleast_1d(fixed), strict=True)), shown)
            table = sub.assign(curve=sub[key].map(names))
            pivot = table.pivot_table(
                index="n", columns="curve", values=["mean", "half_width"], dropna=False
            )
            cols = [names[v] for v in values]
            out.append(
                Comparison(
                    f"{' vs '.join(cols)} · {held}",
                    pivot["mean"].reindex(columns=cols),
                    pivot["half_width"].reindex(columns=cols),
                )
            )
    return out
