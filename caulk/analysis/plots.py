"""Figures: error vs n (log-log, per peft panel, one colour per model size), exponents, D_T."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from caulk.analysis.fits import offset_law, seed_means  # noqa: E402


def _tidy_log_axes(ax) -> None:
    """Plain numbers on log axes: labelled major ticks on x, labelled minor ticks on y."""
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)


def _save(fig, path: Path) -> Path:
    """Lay out ``fig``, write it to ``path`` (PNG, 110 dpi), close it; returns ``path``."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _label(row: pd.Series | dict, keys: list[str]) -> str:
    return " ".join(
        f"{row[k]}"
        for k in keys
        if k not in ("peft", "data") and pd.notna(row[k]) and row[k] != "-"
    )


def _size_order(df: pd.DataFrame, keys: list[str]) -> list[tuple]:
    cols = [k for k in keys if k != "peft"]
    sub = df.drop_duplicates(cols)
    if "backbone_params" in sub:
        sub = sub.sort_values("backbone_params")
    return [tuple(r[c] for c in cols) for _, r in sub.iterrows()]


def plot_curves(
    table: pd.DataFrame, fits: pd.DataFrame, keys: list[str], metric: str, path: Path
) -> Path:
    """Log-log ``metric`` vs n: a panel per peft, a colour per model size, 95% t bands, fitted lines."""
    if "peft" not in table:  # e.g. theory records: one panel
        table = table.assign(peft="-")
        fits = fits.assign(peft="-")
        keys = [*keys, "peft"]
    pefts = sorted(table["peft"].astype(str).unique())
    fig, axes = plt.subplots(
        1, len(pefts), figsize=(5.2 * len(pefts), 4.2), squeeze=False, sharey=True
    )
    others = [k for k in keys if k != "peft"]
    order = _size_order(table, keys)
    colours = plt.cm.viridis(np.linspace(0.05, 0.9, max(1, len(order))))
    colour = {o: colours[i] for i, o in enumerate(order)}
    for ax, peft in zip(axes[0], pefts, strict=True):
        for group, pts in table[table["peft"].astype(str) == peft].groupby(others, dropna=False):
            group = group if isinstance(group, tuple) else (group,)
            m = seed_means(pts, metric)
            label = _label(dict(zip(others, group, strict=True)), others)
            col = colour.get(group, "k")
            ax.plot(m["n"], m["mean"], "o", color=col, label=label, ms=4)
            band = m["ci_half"].fillna(0)  # Student-t over seeds: 4.30 SE for 3 seeds
            ax.fill_between(
                m["n"], (m["mean"] - band).clip(lower=1e-4), m["mean"] + band, color=col, alpha=0.2
            )
            sel = fits[(fits["peft"].astype(str) == peft)]
            for k, v in zip(others, group, strict=True):
                sel = sel[(sel[k] == v) | (sel[k].isna() & pd.isna(v))]
            if len(sel) and np.isfinite(sel["c"].iloc[0]):
                f = sel.iloc[0]
                grid = np.geomspace(m["n"].min(), m["n"].max(), 100)
                ax.plot(
                    grid,
                    offset_law(grid, f["a"], f["b"], f["c"]),
                    "-",
                    color=col,
                    lw=1.2,
                    label=f"  fit c={f['c']:.2f}",
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        _tidy_log_axes(ax)
        ax.set_title(f"peft = {peft}" if peft != "-" else "")
        ax.set_xlabel("n (downstream training samples)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel(metric.replace("_", " "))
    return _save(fig, path)


def plot_exponents(fits: pd.DataFrame, path: Path) -> Path:
    """Fitted rate c (with bootstrap CI) against backbone size, a line per peft."""
    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    fits = fits if "peft" in fits else fits.assign(peft="-")
    for peft, rows in fits[np.isfinite(fits["c"])].groupby("peft"):
        rows = rows.sort_values("backbone_params")
        lo = (rows["c"] - rows["c_lo"]).clip(lower=0).fillna(0)
        hi = (rows["c_hi"] - rows["c"]).clip(lower=0).fillna(0)
        ax.errorbar(
            rows["backbone_params"],
            rows["c"],
            yerr=[lo, hi],
            marker="o",
            capsize=3,
            label=str(peft),
        )
    ax.set_xscale("log")
    ax.set_xlabel("backbone parameters N")
    ax.set_ylabel("fitted rate c in a + b n^-c")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_transfer(points: pd.DataFrame, law: dict | None, path: Path) -> Path:
    """Effective data transferred D_T vs n (log-log), a colour per model size, with the fitted law."""
    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    good = points[np.isfinite(points["D_T"]) & (points["D_T"] > 0)]
    for size, rows in good.groupby("backbone_params"):
        line = ax.plot(
            rows["n"],
            rows["D_T"],
            "o",
            label=f"N={size:,} ({rows['model'].iloc[0]} {rows['peft'].iloc[0]})",
        )
        if law and np.isfinite(law.get("k", np.nan)):
            grid = np.geomspace(rows["n"].min(), rows["n"].max(), 50)
            beta = law["beta"] if np.isfinite(law["beta"]) else 0.0
            ax.plot(
                grid,
                law["k"] * grid ** law["alpha"] * float(size) ** beta,
                "-",
                color=line[0].get_color(),
            )
    flagged = points[points["below_scratch_asymptote"]]
    if len(flagged):
        ax.set_title(
            f"{len(flagged)} point(s) below the from-scratch asymptote: not shown", fontsize=8
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("n (fine-tuning samples)")
    ax.set_ylabel("effective data transferred D_T")
    _tidy_log_axes(ax)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


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


def plot_source_m(table: pd.DataFrame, metric: str, path: Path) -> Path | None:
    """``metric`` against source size m (m=0: random init), a line per n, a panel per model+peft."""
    pivot = source_m_table(table, metric)
    if pivot.empty:
        return None
    groups = pivot.index.droplevel("source_m").unique()
    fig, axes = plt.subplots(
        1, len(groups), figsize=(5.2 * len(groups), 4.2), squeeze=False, sharey=True
    )
    for ax, group in zip(axes[0], groups, strict=True):
        sub = pivot.xs(group, level=list(range(len(pivot.index.names) - 1)))
        ms = sub.index.to_numpy()
        x = np.where(ms == 0, ms[ms > 0].min() / 4 if (ms > 0).any() else 1, ms)
        colours = plt.cm.plasma(np.linspace(0.05, 0.85, len(sub.columns)))
        for col, n in zip(colours, sub.columns, strict=True):
            ax.plot(x, sub[n].to_numpy(), "o-", color=col, ms=4, label=f"n={n}")
        ax.set_xscale("log")
        ax.set_xticks(x)
        ax.set_xticklabels(["0\n(random)" if m == 0 else f"{m:g}" for m in ms])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title(" ".join(str(g) for g in (group if isinstance(group, tuple) else (group,))))
        ax.set_xlabel("source size m (zoo pre-training examples)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    axes[0][0].set_ylabel(metric.replace("_", " "))
    return _save(fig, path)
