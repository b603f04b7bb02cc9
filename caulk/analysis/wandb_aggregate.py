"""One aggregate W&B run per sweep: the table, line series of mean error vs n, fitted exponents."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from caulk.analysis.fits import seed_means
from caulk.loggers import (
    deterministic_run_id,
    offline_run_dir,
    print_sync_hint,
    resolve_wandb_mode,
)


def wandb_table(df: pd.DataFrame):
    """A ``wandb.Table`` of ``df``; object columns become strings (W&B types a column by its
    first row and rejects e.g. a PEFT knob that is None for one curve and 8.0 for the next)."""
    import wandb  # only when W&B logs: +0.3 s to import, paid by no analysis with W&B off

    return wandb.Table(dataframe=df.astype({c: str for c in df.columns if df[c].dtype == object}))


def log_aggregate(
    out: Path,
    table: pd.DataFrame,
    fits: pd.DataFrame,
    keys: list[str],
    metric: str,
    group: str,
    project: str = "caulk",
    mode: str = "auto",
    entity: str | None = None,
) -> str | None:
    """Log the analysis as a ``job_type=aggregate`` run in ``group``; returns the run dir (or None)."""
    mode = resolve_wandb_mode(mode)
    if mode == "disabled":
        return None
    import wandb  # only when W&B logs: +0.3 s to import, paid by no analysis with W&B off

    out.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=project,
        entity=entity,
        group=group,
        job_type="aggregate",
        name=f"{group}-aggregate",
        dir=str(out),
        id=deterministic_run_id(out / "aggregate"),
        resume="allow",
        mode=mode,
        config={"group_by": keys, "metric": metric},
    )
    try:
        run.log({"points": wandb_table(table), "fits": wandb_table(fits)})
        xs, ys, labels = [], [], []
        for group_key, pts in table.groupby(keys, dropna=False):
            m = seed_means(pts, metric)
            xs.append(m["n"].tolist())
            ys.append(m["mean"].tolist())
            labels.append(
                " ".join(
                    str(g) for g in (group_key if isinstance(group_key, tuple) else (group_key,))
                )
            )
        run.log(
            {
                "error_vs_n": wandb.plot.line_series(
                    xs=xs, ys=ys, keys=labels, title=f"{metric} vs n", xname="n"
                )
            }
        )
        for _, f in fits.iterrows():
            name = "/".join(str(f[k]) for k in keys)
            run.summary[f"rate/{name}"] = f.get("rate")
            run.summary[f"asymptote/{name}"] = f.get("asymptote")
            run.summary[f"model/{name}"] = f.get("family")
        return run.dir
    finally:
        offline_dir = offline_run_dir(run)
        run.finish()
        if offline_dir is not None:
            print_sync_hint([offline_dir])
