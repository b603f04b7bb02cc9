"""The analysis pipeline: records -> table, one model per curve, fits, answers, transfer,
figures, report and summary, written into a staged dir that replaces the output whole.

``run_analysis(sweep_dirs, options)`` does the work (``caulk.analysis.options`` says what it is
asked); ``analyze(...)`` is the same with keyword arguments. ``python -m caulk.analyze`` is the CLI.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from caulk.analysis.answers import INTERVALS, ratios, sample_complexity
from caulk.analysis.collect import ADAPTIVE_TRACE, Collection, check_sweep_dirs, collect_records
from caulk.analysis.fits import CurveFit, fit_groups, seed_means
from caulk.analysis.models import curve_models, model_table
from caulk.analysis.options import (
    DEFAULT_GROUP_BY,
    AnalysisOptions,
    Questions,
    selector_text,
)
from caulk.analysis.output import staged
from caulk.analysis.report import write_report
from caulk.analysis.transfer import effective_data_transferred, fit_transfer_law
from caulk.atomic import write_atomic
from caulk.errors import CaulkConfigError

log = logging.getLogger("caulk.analyze")

#: seed-bootstrap refits of pow3's a, b, c (fits.csv's secondary view; the answers use the model)
POW3_REPLICATES = 20


@dataclass
class Analysis:
    """What an analysis produced: its tables, fits, answers and summary, and the files written."""

    out: Path
    table: pd.DataFrame
    fits: pd.DataFrame
    transfer: pd.DataFrame | None
    transfer_law: dict[str, Any] | None
    summary: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)
    answers: pd.DataFrame | None = None
    ratios: pd.DataFrame | None = None
    points: pd.DataFrame = field(default_factory=pd.DataFrame)  # the curves' ok points, keyed


def _matches(df: pd.DataFrame, selector: dict[str, str]) -> pd.Series:
    mask = pd.Series(True, index=df.index)
    for k, v in selector.items():
        mask &= df[k].astype(str) == v if k in df else False
    return mask


def analyze(
    sweep_dirs: list[str | Path],
    out: str | Path | None = None,
    metric: str | None = None,
    group_by: list[str] | None = None,
    replicates: int = 200,
    scratch: str = "peft=full,weights=none",
    low_data_max_n: float | None = None,
    wandb_mode: str = "off",
    wandb_project: str = "caulk",
    wandb_group: str | None = None,
    rng_seed: int = 0,
    formats: str | list[str] | tuple[str, ...] = "png",
    questions: Questions | None = None,
) -> Analysis:
    """``run_analysis`` with its options as keyword arguments (``AnalysisOptions``' fields)."""
    options = AnalysisOptions(
        out,
        metric,
        group_by,
        replicates,
        scratch,
        low_data_max_n,
        wandb_mode,
        wandb_project,
        wandb_group,
        rng_seed,
        formats,
        questions or Questions(),
    )
    return run_analysis(sweep_dirs, options)


def run_analysis(sweep_dirs: list[str | Path], options: AnalysisOptions) -> Analysis:
    """Run the whole analysis of one or more sweep dirs and write its outputs into ``options.out``.

    ``options.questions`` (target errors, a baseline, the curve family) adds the
    sample-complexity answers. The outputs are written into a fresh dir next to ``out`` that then
    replaces it whole: a failed analysis leaves ``out`` as it was. An ``out`` that is unwritable,
    holds the sweep's records or holds anything but a previous analysis fails before any work
    (``caulk.analysis.output``).
    """
    sweep_dirs = check_sweep_dirs(sweep_dirs)
    out = options.out or sweep_dirs[0] / "analysis"
    extra = ("wandb",) if options.wandb_mode != "off" else ()
    with staged(out, sweep_dirs, extra) as work:
        result = _write_analysis(work, sweep_dirs, options)
    result.out = out
    result.files = {name: out / path.relative_to(work) for name, path in result.files.items()}
    if options.wandb_mode != "off" and len(result.points):
        _log_wandb(result, sweep_dirs, options)
    return result


def adaptive_traces(sweep_dirs: list[Path]) -> dict[str, dict]:
    """Every adaptive job's trace under the sweep dirs (``adaptive.json``), by its dir."""
    traces = {}
    for root in sweep_dirs:
        for path in sorted(root.rglob(ADAPTIVE_TRACE)):
            try:
                traces[str(path.parent)] = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as e:
                log.warning("unreadable %s: %s", path, e)
    return traces


def _read_points(
    sweep_dirs: list[Path], options: AnalysisOptions
) -> tuple[Collection, pd.DataFrame, list[dict[str, str]], list[str], str]:
    """The sweeps' records, their curve points (ok, keyed), the records skipped, the curve keys
    and the metric; a one-line CaulkConfigError for a bad metric, key or baseline."""
    collection = collect_records(sweep_dirs)
    metric = options.metric or _default_metric(collection.table)
    ok, skipped = collection.points(metric)
    keys, ok = _group_keys(collection.table, ok, metric, options.group_by)
    _check_baseline(ok, keys, options.questions.baseline)
    return collection, ok, skipped, keys, metric


def _write_analysis(work: Path, sweep_dirs: list[Path], options: AnalysisOptions) -> Analysis:
    """Every output of the analysis, written into the staging dir ``work``."""
    collection, ok, skipped, keys, metric = _read_points(sweep_dirs, options)
    questions, replicates, rng_seed = options.questions, options.replicates, options.rng_seed
    files = _write_tables(work, collection.table)
    models = curve_models(ok, keys, metric, questions.family, replicates, rng_seed)
    fits = _fits(ok, keys, metric, replicates, rng_seed, models)
    files["fits.csv"] = write_atomic(work / "fits.csv", lambda p: fits.to_csv(p, index=False))
    answers, ratio_table = _answers(work, ok, keys, metric, questions, models, files)
    transfer, law, transfer_note = _transfer(work, ok, fits, keys, metric, options, files)
    figures, by_source_m = _figures(
        work, ok, fits, keys, metric, transfer, law, files, options.formats, answers, models
    )
    summary = _summary(sweep_dirs, collection, ok, skipped, metric, keys, fits)
    summary.update(transfer_law=law, transfer_note=transfer_note)
    summary.update(_answers_summary(questions, answers, ratio_table))
    summary["backbone_runs_note"] = backbone_runs_note(ok, keys)
    files["report.html"] = write_report(
        work,
        summary,
        fits,
        figures,
        law,
        collection.failed,
        collection.missing,
        by_source_m,
        points=ok,
        answers=answers,
        ratios=ratio_table,
        adaptive=adaptive_traces(sweep_dirs),
    )
    files["summary.json"] = write_atomic(
        work / "summary.json",
        lambda p: p.write_text(json.dumps(summary, indent=2, default=str)),
    )
    table = collection.table
    return Analysis(work, table, fits, transfer, law, summary, files, answers, ratio_table, ok)


def _log_wandb(result: Analysis, sweep_dirs: list[Path], options: AnalysisOptions) -> None:
    """The aggregate W&B run of the analysis; its dir goes into the summary."""
    # optional wandb, and caulk.loggers pulls in pytorch_lightning (~5 s): only when W&B logs
    from caulk.analysis.wandb_aggregate import log_aggregate

    s = result.summary
    group = options.wandb_group or sweep_dirs[0].resolve().name
    s["wandb_dir"] = log_aggregate(
        result.out,
        result.points,
        result.fits,
        s["group_by"],
        s["metric"],
        group,
        options.wandb_project,
        options.wandb_mode,
    )


def _check_baseline(ok: pd.DataFrame, keys: list[str], baseline: dict[str, str] | None) -> None:
    """CaulkConfigError (before any fit) when --baseline names no curve key or matches none."""
    if baseline is None:
        return
    unknown = [k for k in baseline if k not in keys]
    if unknown:
        raise CaulkConfigError(
            f"--baseline key {unknown[0]!r} is not a curve key (curves are {','.join(keys)})"
        )
    if not _matches(ok, baseline).any():
        raise CaulkConfigError(f"--baseline {selector_text(baseline)} matches no curve")


def _fits(
    ok: pd.DataFrame, keys: list[str], metric: str, replicates: int, rng_seed: int, models: dict
) -> pd.DataFrame:
    """fits.csv: the pow3 fit of each curve (a, b, c with bootstrap CIs, the pure power law: a
    secondary view), then the curve's model (``caulk.analysis.models``): its name (``family``),
    weights, local rate and floor with intervals, parameters and every family's backtest."""
    if not len(ok):
        return pd.DataFrame(columns=keys)
    fits = fit_groups(ok, keys, metric, min(replicates, POW3_REPLICATES), rng_seed)
    return fits.merge(model_table(ok, keys, metric, models=models), on=keys, how="left")


def _answers(
    work: Path,
    ok: pd.DataFrame,
    keys: list[str],
    metric: str,
    questions: Questions,
    models: dict,
    files: dict[str, Path],
) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """sample_complexity.csv (n* per curve and target) and ratios.csv (against --baseline)."""
    if not questions.targets or not len(ok):
        return None, None
    answers = sample_complexity(
        ok,
        keys,
        metric,
        list(questions.targets),
        questions.family,
        max_extrapolation=questions.max_extrapolation,
        models=models,
    )
    files["sample_complexity.csv"] = write_atomic(
        work / "sample_complexity.csv",
        lambda p: answers.drop(columns="draws").to_csv(p, index=False),
    )
    if questions.baseline is None:
        return answers, None
    ratio_table = ratios(answers, keys, questions.baseline)
    files["ratios.csv"] = write_atomic(
        work / "ratios.csv", lambda p: ratio_table.to_csv(p, index=False)
    )
    return answers, ratio_table


def _answers_summary(
    questions: Questions, answers: pd.DataFrame | None, ratio_table: pd.DataFrame | None
) -> dict[str, Any]:
    """The summary.json entries of the answers (n* = inf is written as null; see its note)."""

    def records(df: pd.DataFrame | None) -> list[dict[str, Any]]:
        if df is None:
            return []
        return json.loads(df.drop(columns="draws", errors="ignore").to_json(orient="records"))

    return {
        "family": questions.family,
        "max_extrapolation": questions.max_extrapolation,
        "intervals": INTERVALS,
        "targets": list(questions.targets),
        "baseline": selector_text(questions.baseline) if questions.baseline else None,
        "answers": records(answers),
        "ratios": records(ratio_table),
    }


def _summary(
    sweep_dirs: list[Path],
    collection: Collection,
    ok: pd.DataFrame,
    skipped: list[dict[str, str]],
    metric: str,
    keys: list[str],
    fits: pd.DataFrame,
) -> dict[str, Any]:
    """The counts and problems of the analysis (summary.json; the transfer law is added after)."""
    return {
        "sweep_dirs": [str(d) for d in sweep_dirs],
        "records": len(collection.table),
        "ok": int(len(ok)),
        "failed": len(collection.failed),
        "missing": len(collection.missing),
        "unreadable": len(collection.unreadable),
        "skipped": len(skipped),
        "failed_jobs": collection.failed,
        "missing_jobs": collection.missing,
        "unreadable_records": collection.unreadable,
        "skipped_records": skipped,
        "lambda_at_edge_records": lambda_at_edge(ok),
        "metric": metric,
        "group_by": keys,
        "groups": int(len(fits)),
        "fitted_groups": int(np.isfinite(fits["c"]).sum()) if "c" in fits else 0,
    }


def backbone_runs_note(points: pd.DataFrame, keys: list[str]) -> str:
    """What ratios between backbones leave out when every curve rests on one backbone run: one
    zoo pre-training run (``zoo_entry``) or one random init (``init_seed``) per curve; "" when
    some curve has several, or the records say neither."""
    runs = [c for c in ("zoo_entry", "init_seed") if c in points and points[c].notna().any()]
    if not runs or "model" not in keys:
        return ""
    per_curve = points.groupby(keys, dropna=False)[runs].nunique(dropna=True).max(axis=1)
    if (per_curve > 1).any():
        return ""
    return (
        "Each curve rests on a single backbone run (one zoo pre-training run or random init per "
        "model): the intervals carry the training subsets' seeds and the curve family, not the "
        "backbone's own randomness. To put it in, give each seed its own backbone: "
        "model.init_seed='${seed}' (random init) or model.source_seed='${seed}' (zoo)."
    )


def lambda_at_edge(points: pd.DataFrame) -> list[dict[str, str]]:
    """The points whose solver chose a λ at the edge of its grid (``selected.lambda_at_edge``
    in the record): the best λ may lie beyond the grid, so their error may be too high."""
    column = "selected.lambda_at_edge"
    if column not in points or "record_path" not in points:
        return []
    edge = points[points[column].isin(["low", "high"])]
    return [
        {"path": str(r["record_path"]), "message": f"λ at the {r[column]} end of peft.lambdas"}
        for _, r in edge.iterrows()
    ]


def _default_metric(table: pd.DataFrame) -> str:
    """Training records fit test error; theory records their excess risk."""
    return next((m for m in ("test_error", "excess_risk") if m in table.columns), "test_error")


def _group_keys(
    table: pd.DataFrame, ok: pd.DataFrame, metric: str, group_by: list[str] | None
) -> tuple[list[str], pd.DataFrame]:
    """The keys that define a curve, and the ok points with NaN keys grouped as "-"."""
    if group_by is None and "curve_keys" in ok.columns:
        group_by = list(
            dict.fromkeys(k for ks in ok["curve_keys"].dropna() for k in ks.split(",") if k)
        )
    if metric not in table.columns:
        raise CaulkConfigError(
            f"metric {metric!r} is not a record field; try test_error, test_loss, val_error"
        )
    keys = [k for k in (group_by or DEFAULT_GROUP_BY) if k in table.columns]
    if not {"n", "seed"} <= set(table.columns) or not keys:
        raise CaulkConfigError("records need n, seed and at least one group key (e.g. model, peft)")
    ok = ok.copy()
    for k in keys:  # NaN group keys (e.g. source_m of hub models) group as "-"
        ok[k] = ok[k].astype(object).where(ok[k].notna(), "-")
    return keys, ok


def _write_tables(work: Path, table: pd.DataFrame) -> dict[str, Path]:
    """table.csv and table.parquet (every readable record, ok or not)."""
    return {
        "table.csv": write_atomic(work / "table.csv", lambda p: table.to_csv(p, index=False)),
        "table.parquet": write_atomic(
            work / "table.parquet",
            lambda p: table.astype(
                {c: str for c in table.columns if table[c].dtype == object}
            ).to_parquet(p, index=False),
        ),
    }


def _transfer(
    work: Path,
    ok: pd.DataFrame,
    fits: pd.DataFrame,
    keys: list[str],
    metric: str,
    options: AnalysisOptions,
    files: dict[str, Path],
) -> tuple[pd.DataFrame | None, dict[str, Any] | None, str]:
    """Effective data transferred against the from-scratch curve, and its law (with a note when
    there is none, or when points whose D_E lies beyond the from-scratch curve's largest
    measured n were left out of it); writes transfer.csv and transfer_fit.json."""
    selector = options.scratch_selector
    is_scratch = _matches(ok, selector)
    if not (is_scratch.any() and (~is_scratch).any()):
        return None, None, f"no from-scratch curve ({options.scratch}) next to fine-tuned ones"
    scratch_fits = fits[_matches(fits, {k: v for k, v in selector.items() if k in fits})]
    rows = []
    for group, pts in ok[~is_scratch].groupby(keys, dropna=False):
        group = dict(zip(keys, group if isinstance(group, tuple) else (group,), strict=True))
        same = (
            scratch_fits[scratch_fits["model"] == group.get("model")]
            if "model" in group
            else scratch_fits
        )
        ref = same if len(same) == 1 else scratch_fits if len(scratch_fits) == 1 else None
        if ref is None or not np.isfinite(ref["c"].iloc[0]):
            continue
        f = ref.iloc[0]
        m = seed_means(pts, metric).assign(**group, backbone_params=pts["backbone_params"].iloc[0])
        fit = CurveFit(f["a"], f["b"], f["c"], f["rmse"], 0)
        rows.append(effective_data_transferred(m, fit, scratch_n_max=float(f["n_max"])))
    if not rows:
        return None, None, "no from-scratch curve with a valid fit"
    transfer = pd.concat(rows, ignore_index=True)
    files["transfer.csv"] = write_atomic(
        work / "transfer.csv", lambda p: transfer.to_csv(p, index=False)
    )
    try:
        law = fit_transfer_law(
            transfer, options.low_data_max_n, options.questions.allow_extrapolation
        )
    except CaulkConfigError as e:
        return transfer, None, str(e)
    files["transfer_fit.json"] = write_atomic(
        work / "transfer_fit.json", lambda p: p.write_text(json.dumps(law, indent=2))
    )
    left_out = law["left_out_extrapolated"]
    note = (
        f"{left_out} points left out of the D_T law: their D_E lies beyond the from-scratch "
        "curve's largest measured n (--allow-extrapolation keeps them)"
        if left_out
        else ""
    )
    return transfer, law, note


def _figures(
    work: Path,
    ok: pd.DataFrame,
    fits: pd.DataFrame,
    keys: list[str],
    metric: str,
    transfer: pd.DataFrame | None,
    law: dict[str, Any] | None,
    files: dict[str, Path],
    formats: tuple[str, ...] = ("png",),
    answers: pd.DataFrame | None = None,
    models: dict | None = None,
) -> tuple[list[Path], pd.DataFrame]:
    """The figures (and the source-m table) of the analysis, written into ``work`` as PNG (the
    list returned, for the report) and in each other of ``formats`` beside it (in ``files``)."""
    # matplotlib is slow to import: +0.25-0.5 s, about twice the time of `caulk.analyze --help`
    from caulk.analysis.plots import (
        plot_curves,
        plot_exponents,
        plot_source_m,
        plot_transfer,
        source_m_table,
    )

    figures = []
    if len(ok):
        figures.append(
            plot_curves(ok, fits, keys, metric, work / "error_vs_n.png", answers, formats, models)
        )
        if "backbone_params" in fits and np.isfinite(fits["c"]).any():
            figures.append(plot_exponents(fits, work / "exponents.png", keys, formats))
    by_source_m = source_m_table(ok, metric) if len(ok) else pd.DataFrame()
    if not by_source_m.empty:
        figures.append(plot_source_m(ok, metric, work / "error_vs_source_m.png", formats))
        files["source_m.csv"] = write_atomic(work / "source_m.csv", by_source_m.to_csv)
    if transfer is not None:
        figures.append(plot_transfer(transfer, law, work / "transfer.png", formats))
    files.update(
        {f.with_suffix(f".{x}").name: f.with_suffix(f".{x}") for f in figures for x in formats}
    )
    return figures, by_source_m
