"""Figures fit for a paper: error vs n (a colour per model size, a line style and marker per
source m / method, targets with n* marked), fitted rates c vs N, D_T, error vs source m.

Each ``*_figure`` function returns the matplotlib Figure (for tests and notebooks); each
``plot_*`` function saves it as PNG (the report embeds it) and in any other format asked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from caulk.analysis.averaging import CurveModel  # noqa: E402
from caulk.analysis.families import FAMILIES  # noqa: E402
from caulk.analysis.fits import offset_law, seed_means  # noqa: E402
from caulk.analysis.labels import (  # noqa: E402
    curve_label,
    key_text,
    matching_rows,
    size_order,
    sort_key,
    varying_keys,
)
from caulk.analysis.models import curve_model  # noqa: E402
from caulk.errors import CaulkConfigError  # noqa: E402

DPI = 150
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", ":", "-.")
#: n* further than this factor beyond a curve's largest measured n is left off its figure
TARGET_PLOT_REACH = 10.0


def palette(count: int) -> list[tuple]:
    """``count`` distinct colours: tab10 up to ten, else evenly spaced over turbo."""
    if count <= 10:
        return [plt.cm.tab10(i) for i in range(count)]
    return [tuple(c) for c in plt.cm.turbo(np.linspace(0.05, 0.95, count))]


def plain_number(value: float, _pos=None) -> str:
    """A tick label: 20, 0.3, 5000, 45K, 1.2M (a K/M/G suffix from 10,000 on)."""
    if abs(value) >= 1e4:
        for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
            if abs(value) >= scale:
                return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def readable_log_ticks(axis, lo: float, hi: float) -> None:
    """Labelled ticks on a log ``axis`` over [lo, hi] whatever its range: decades over wide
    ranges, 1-2-5 over one or two decades, 1..8 within one, plain steps within a fraction."""
    span = np.log10(hi / lo) if lo > 0 and hi > lo else 0.0
    if span < 0.35:
        locator = matplotlib.ticker.MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10])
    else:
        subs = (1.0,) if span >= 2.5 else (1.0, 2.0, 5.0) if span >= 1 else (1, 2, 3, 4, 5, 6, 8)
        locator = matplotlib.ticker.LogLocator(base=10, subs=subs)
    axis.set_major_locator(locator)
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(plain_number))
    axis.set_minor_locator(matplotlib.ticker.LogLocator(base=10, subs="auto"))
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _log_axes(ax, y: bool = True) -> None:
    ax.set_xscale("log")
    readable_log_ticks(ax.xaxis, *ax.get_xlim())
    if y:
        ax.set_yscale("log")
        readable_log_ticks(ax.yaxis, *ax.get_ylim())


def save_figure(fig: Figure, path: Path, formats: Iterable[str] = ("png",)) -> Path:
    """Write ``fig`` as ``path`` (PNG, :data:`DPI`) and beside it in each other format; close it."""
    path = Path(path)
    for fmt in dict.fromkeys(["png", *formats]):
        fig.savefig(path.with_suffix(f".{fmt}"), dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


@dataclass
class Curve:
    """One curve of the error-vs-n figure: its key values, seed means, fit (the offset power
    law's row), look, and ``law``: the fitted family the line draws when the fits name one (the
    family whose n* the answers give), else None (the line is the offset power law)."""

    values: dict
    means: pd.DataFrame
    fit: pd.Series | None
    colour: tuple
    marker: str
    linestyle: str
    label: str
    law: CurveModel | None = None


def _ordered_combos(table: pd.DataFrame, keys: list[str]) -> list[tuple]:
    combos = {tuple(key_text(v) for v in row) for row in table[keys].itertuples(index=False)}
    return sorted(combos, key=lambda c: tuple(sort_key(v) for v in c))


def _styles(table: pd.DataFrame, style_keys: list[str]) -> dict[tuple, tuple[str, str]]:
    """A (marker, line style) per combination of the style keys: the line style says the method
    (peft, else the first style key), the marker the rest (e.g. source m); one key sets both."""
    line_key = "peft" if "peft" in style_keys else style_keys[0] if style_keys else None
    marker_keys = [k for k in style_keys if k != line_key] or style_keys
    lines = {c: i for i, c in enumerate(_ordered_combos(table, [line_key] if line_key else []))}
    markers = {c: i for i, c in enumerate(_ordered_combos(table, marker_keys))}
    styles = {}
    for combo in _ordered_combos(table, style_keys):
        values = dict(zip(style_keys, combo, strict=True))
        line = lines[tuple(values[k] for k in ([line_key] if line_key else []))]
        marker = markers[tuple(values[k] for k in marker_keys)]
        styles[combo] = (MARKERS[marker % len(MARKERS)], LINESTYLES[line % len(LINESTYLES)])
    return styles


def _colour_order(table: pd.DataFrame, by: str) -> list[str]:
    """The values of the colour key in order: models by parameter count, others by value."""
    if by == "model":
        return size_order(table)
    return [key_text(v) for v in sorted(set(table[by].map(key_text)), key=sort_key)]


def _fit_of(fits: pd.DataFrame, curve: dict, keys: list[str]) -> pd.Series | None:
    rows = matching_rows(fits, curve, keys)
    if rows.empty or not np.isfinite(rows.get("rate", pd.Series([np.nan])).iloc[0]):
        return None
    return rows.iloc[0]


def _curve_law(fit: pd.Series | None, pts: pd.DataFrame, metric: str) -> CurveModel | None:
    """The curve's model as the answers fit it (its line only: no draws); None when the fits
    have no model for it or it cannot be fitted."""
    name = fit.get("family") if fit is not None else None
    if not isinstance(name, str) or not name:
        return None
    try:
        return curve_model(pts, metric, name if name in FAMILIES else "auto", replicates=0)
    except CaulkConfigError:
        return None


def error_curves(
    table: pd.DataFrame,
    fits: pd.DataFrame,
    keys: list[str],
    metric: str,
    laws: dict | None = None,
) -> list[Curve]:
    """The curves of ``table`` (one per combination of ``keys``) with their look: a colour per
    model by parameter count, a marker and line style per combination of the other varying keys;
    ordered by model size, then by those keys."""
    shown = varying_keys(table, keys)
    by = "model" if "model" in keys else shown[0]  # the colour key
    style_keys = [k for k in shown if k != by]
    styles = _styles(table, style_keys)
    models = _colour_order(table, by)
    colour = dict(zip(models, palette(len(models)), strict=True))
    curves = []
    for group, pts in table.groupby(keys, dropna=False, sort=False):
        values = dict(zip(keys, group if isinstance(group, tuple) else (group,), strict=True))
        if "peft_knob" in pts:
            values.setdefault("peft_knob", pts["peft_knob"].iloc[0])
        fit = _fit_of(fits, values, keys)
        style = tuple(key_text(values[k]) for k in style_keys)
        means = seed_means(pts, metric)
        given = (laws or {}).get(group if isinstance(group, tuple) else (group,))
        law = given if isinstance(given, CurveModel) else _curve_law(fit, pts, metric)
        law = law if fit is not None else None
        label = curve_label(values, shown)
        label += f" · rate {fit['rate']:.2f} · {law.short_name}" if law else " · not fitted"
        curves.append(
            Curve(values, means, fit, colour[key_text(values[by])], *styles[style], label, law)
        )
    rank = {m: i for i, m in enumerate(models)}
    style_rank = {s: i for i, s in enumerate(styles)}
    curves.sort(
        key=lambda c: (
            rank[key_text(c.values[by])],
            style_rank[tuple(key_text(c.values[k]) for k in style_keys)],
        )
    )
    return curves


def _draw_curve(ax, curve: Curve) -> Line2D:
    """Seed means with 95% Student-t bands over seeds and the fitted law (the chosen family's
    where the fits name one); returns the curve's legend handle."""
    m = curve.means
    look = {"color": curve.colour}
    ax.plot(m["n"], m["mean"], curve.marker, ms=4.5, linestyle="none", **look)
    band = m["ci_half"].fillna(0)  # Student-t over seeds: 4.30 SE for 3 seeds
    low = (m["mean"] - band).clip(lower=1e-4)
    ax.fill_between(m["n"], low, m["mean"] + band, alpha=0.15, lw=0, **look)
    grid = np.geomspace(m["n"].min(), m["n"].max(), 100)
    if curve.law is not None:
        ax.plot(grid, curve.law.predict(grid), curve.linestyle, lw=1.4, **look)
    elif curve.fit is not None:
        f = curve.fit
        ax.plot(grid, offset_law(grid, f["a"], f["b"], f["c"]), curve.linestyle, lw=1.4, **look)
    else:
        ax.plot(m["n"], m["mean"], curve.linestyle, lw=0.8, alpha=0.7, **look)
    return Line2D([], [], marker=curve.marker, linestyle=curve.linestyle, label=curve.label, **look)


def _draw_targets(ax, curves: list[Curve], answers: pd.DataFrame, keys: list[str]) -> None:
    """Horizontal lines at the answers' target errors, n* (with its interval) on each curve's
    line; hollow markers where n* is extrapolated beyond the largest n measured."""
    targets = pd.to_numeric(answers["target"], errors="coerce").dropna().unique()
    for target in sorted(targets):
        ax.axhline(target, color="0.35", lw=0.8, ls=(0, (4, 3)), zorder=1)
        ax.annotate(
            f"target {target:g}",
            xy=(0.0, target),
            xycoords=("axes fraction", "data"),
            xytext=(3, 2),
            textcoords="offset points",
            ha="left",
            fontsize=7,
            color="0.3",
        )
    for curve in curves:
        reach = TARGET_PLOT_REACH * curve.means["n"].max()
        for _, a in matching_rows(answers, curve.values, keys).iterrows():
            n_star = a.get("n_star", np.nan)
            if not (np.isfinite(n_star) and 0 < n_star <= reach):
                continue
            lo, hi = a.get("n_star_lo", np.nan), a.get("n_star_hi", np.nan)
            spread = np.clip([[n_star - lo], [hi - n_star]], 0, None)
            xerr = spread if np.isfinite(spread).all() else None
            face = "white" if bool(a.get("extrapolated", False)) else curve.colour
            ax.errorbar(
                [n_star],
                [a["target"]],
                xerr=xerr,
                marker=curve.marker,
                ms=7,
                mfc=face,
                color=curve.colour,
                capsize=2,
                lw=1,
                zorder=4,
            )


def curves_figure(
    table: pd.DataFrame,
    fits: pd.DataFrame,
    keys: list[str],
    metric: str,
    answers: pd.DataFrame | None = None,
    models: dict | None = None,
) -> Figure:
    """Log-log ``metric`` vs n on one axes: a colour per model size, a marker and line style per
    source m / method, 95% Student-t bands, each curve's model line, one legend entry per curve
    (with its rate) outside the axes; with ``answers``, the target errors with n* marked on each
    curve. ``models``: the curves' models by key tuple (else refitted from the points)."""
    curves = error_curves(table, fits, keys, metric, laws=models)
    fig = plt.figure(figsize=(8.0, 4.8), layout="constrained")
    ax = fig.add_subplot()
    handles = [_draw_curve(ax, c) for c in curves]
    if answers is not None and len(answers) and "target" in answers:
        _draw_targets(ax, curves, answers, keys)
    _log_axes(ax)
    ax.set_xlabel("n (downstream training samples)")
    ax.set_ylabel(metric.replace("_", " "))
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)
    fig.legend(handles=handles, loc="outside right upper", fontsize=7.5, frameon=False)
    return fig


def plot_curves(
    table: pd.DataFrame,
    fits: pd.DataFrame,
    keys: list[str],
    metric: str,
    path: Path,
    answers: pd.DataFrame | None = None,
    formats: Iterable[str] = ("png",),
    models: dict | None = None,
) -> Path:
    """Save :func:`curves_figure` as ``path`` (PNG) and in ``formats`` beside it."""
    figure = curves_figure(table, fits, keys, metric, answers, models)
    return save_figure(figure, path, formats)


def _dodge(x: np.ndarray, index: int, count: int) -> np.ndarray:
    """Series side by side at the same N: a small multiplicative offset per series."""
    return x * 1.06 ** (index - (count - 1) / 2)


def exponents_figure(fits: pd.DataFrame, keys: list[str] | None = None) -> Figure:
    """Each curve's local rate at its largest n (its model's; 95% interval) against backbone
    size N: a series per (peft, source m, ...),
    its points labelled by model, lines only between points of the same series."""
    keys = keys or list(fits.columns[: list(fits.columns).index("backbone_params")])
    good = fits[np.isfinite(pd.to_numeric(fits["rate"], errors="coerce"))]
    series_keys = [k for k in varying_keys(fits, keys) if k != "model"]
    groups = list(good.groupby(series_keys, sort=False)) if series_keys else [((), good)]
    groups.sort(key=lambda g: tuple(sort_key(v) for v in np.atleast_1d(g[0])))
    styles = _styles(good, series_keys)
    fig = plt.figure(figsize=(7.0, 4.4), layout="constrained")
    ax = fig.add_subplot()
    for i, ((name, rows), colour) in enumerate(zip(groups, palette(len(groups)), strict=True)):
        marker, line = styles[tuple(key_text(v) for v in np.atleast_1d(name))]
        rows = rows.sort_values("backbone_params")
        values = dict(zip(series_keys, np.atleast_1d(name), strict=True))
        x = _dodge(rows["backbone_params"].to_numpy(float), i, len(groups))
        lo = (rows["rate"] - rows["rate_lo"]).clip(lower=0).fillna(0)
        hi = (rows["rate_hi"] - rows["rate"]).clip(lower=0).fillna(0)
        ax.errorbar(
            x,
            rows["rate"],
            yerr=[lo, hi],
            marker=marker,
            capsize=3,
            color=colour,
            linestyle=line if len(rows) > 1 else "none",
            label=curve_label(values, series_keys) if series_keys else "all",
        )
        for xi, (_, row) in zip(x, rows.iterrows(), strict=True):
            ax.annotate(
                key_text(row.get("model", "")),
                (xi, row["rate"]),
                xytext=(4, 3),
                textcoords="offset points",
                fontsize=7,
                color=colour,
            )
    _log_axes(ax, y=False)
    ax.set_xlabel("backbone parameters N")
    ax.set_ylabel("local rate $-$d log e / d log n at the largest n")
    ax.grid(True, which="major", alpha=0.35)
    fig.legend(loc="outside right upper", fontsize=8, frameon=False)
    return fig


def plot_exponents(
    fits: pd.DataFrame,
    path: Path,
    keys: list[str] | None = None,
    formats: Iterable[str] = ("png",),
) -> Path:
    """Save :func:`exponents_figure` as ``path`` (PNG) and in ``formats`` beside it."""
    return save_figure(exponents_figure(fits, keys), path, formats)


def transfer_figure(points: pd.DataFrame, law: dict | None) -> Figure:
    """Effective data transferred D_T vs n (log-log), a colour per model size, the fitted law."""
    fig = plt.figure(figsize=(7.0, 4.4), layout="constrained")
    ax = fig.add_subplot()
    good = points[np.isfinite(points["D_T"]) & (points["D_T"] > 0)]
    sizes = sorted(good["backbone_params"].unique())
    for size, colour in zip(sizes, palette(len(sizes)), strict=True):
        rows = good[good["backbone_params"] == size]
        label = f"{rows['model'].iloc[0]} · {rows['peft'].iloc[0]} (N={size:,})"
        ax.plot(rows["n"], rows["D_T"], "o", color=colour, label=label)
        if law and np.isfinite(law.get("k", np.nan)):
            grid = np.geomspace(rows["n"].min(), rows["n"].max(), 50)
            beta = law["beta"] if np.isfinite(law["beta"]) else 0.0
            d_t = law["k"] * grid ** law["alpha"] * float(size) ** beta
            ax.plot(grid, d_t, "-", color=colour)
    flagged = points[points["below_scratch_asymptote"]]
    if len(flagged):
        ax.set_title(
            f"{len(flagged)} point(s) below the from-scratch asymptote: not shown", fontsize=8
        )
    if len(good):
        _log_axes(ax)
    ax.set_xlabel("n (fine-tuning samples)")
    ax.set_ylabel("effective data transferred D$_T$")
    ax.grid(True, which="major", alpha=0.35)
    fig.legend(loc="outside right upper", fontsize=7.5, frameon=False)
    return fig


def plot_transfer(
    points: pd.DataFrame, law: dict | None, path: Path, formats: Iterable[str] = ("png",)
) -> Path:
    """Save :func:`transfer_figure` as ``path`` (PNG) and in ``formats`` beside it."""
    return save_figure(transfer_figure(points, law), path, formats)


def source_m_table(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Seed-mean ``metric`` per (data, model, peft, source_m) row and n column.

    Only (data, model, peft) groups that ran more than one source size m (``weights=zoo``; m=0
    is the random initialisation) are kept; empty when there are none.
    """
    need = {"source_m", "model", "peft", "n", metric}
    if not need <= set(table.columns):
        return pd.DataFrame()
    zoo = table[pd.to_numeric(table["source_m"], errors="coerce").notna()].copy()
    zoo["source_m"] = zoo["source_m"].astype(int)
    cols = [c for c in ("data", "model", "peft") if c in zoo]
    varied = zoo.groupby(cols)["source_m"].transform("nunique") > 1
    zoo = zoo[varied]
    if zoo.empty:
        return pd.DataFrame()
    return zoo.pivot_table(index=[*cols, "source_m"], columns="n", values=metric, aggfunc="mean")


def source_m_figure(pivot: pd.DataFrame, metric: str) -> Figure:
    """``metric`` against source size m (m=0: random init), a line per n, a panel per model+peft."""
    groups = pivot.index.droplevel("source_m").unique()
    fig, axes = plt.subplots(
        1,
        len(groups),
        figsize=(4.6 * len(groups) + 1.2, 4.2),
        squeeze=False,
        sharey=True,
        layout="constrained",
    )
    colours = plt.cm.plasma(np.linspace(0.05, 0.85, len(pivot.columns)))
    for ax, group in zip(axes[0], groups, strict=True):
        sub = pivot.xs(group, level=list(range(len(pivot.index.names) - 1)))
        ms = sub.index.to_numpy()
        x = np.where(ms == 0, ms[ms > 0].min() / 4 if (ms > 0).any() else 1, ms)
        for col, n in zip(colours, sub.columns, strict=True):
            ax.plot(x, sub[n].to_numpy(), "o-", color=col, ms=4, label=f"n={n}")
        ax.set_xscale("log")
        ax.set_xticks(x)
        ax.set_xticklabels(["0\n(random)" if m == 0 else f"{m:g}" for m in ms])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        group = group if isinstance(group, tuple) else (group,)
        ax.set_title(" · ".join(key_text(g) for g in group), fontsize=9)
        ax.set_xlabel("source size m (zoo pre-training examples)")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel(metric.replace("_", " "))
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=7.5, frameon=False)
    return fig


def plot_source_m(
    table: pd.DataFrame, metric: str, path: Path, formats: Iterable[str] = ("png",)
) -> Path | None:
    """Save :func:`source_m_figure` as ``path`` (PNG) and in ``formats``; None without an m sweep."""
    pivot = source_m_table(table, metric)
    if pivot.empty:
        return None
    return save_figure(source_m_figure(pivot, metric), path, formats)
