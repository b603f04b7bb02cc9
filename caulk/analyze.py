"""``python -m caulk.analyze <sweep dir> [...]``: records -> table, fits, transfer, figures, report.

Reads only the ``record.json`` files on disk (no live process, no W&B API needed); failed and
missing jobs, and records that are unreadable or no points of the metric, are reported, never fatal.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from caulk.analysis.answers import (
    INTERVALS,
    MAX_EXTRAPOLATION,
    answer_lines,
    parse_targets,
    ratios,
    sample_complexity,
)
from caulk.analysis.collect import Collection, check_sweep_dirs, collect_records
from caulk.analysis.families import FAMILIES
from caulk.analysis.fits import CurveFit, fit_groups, seed_means
from caulk.analysis.labels import curve_label, varying_keys
from caulk.analysis.models import curve_models, model_table
from caulk.analysis.output import staged
from caulk.analysis.report import count_line, write_report
from caulk.analysis.transfer import effective_data_transferred, fit_transfer_law
from caulk.atomic import write_atomic
from caulk.errors import CaulkConfigError

#: seed-bootstrap refits of pow3's a, b, c (fits.csv's secondary view; the answers use the model)
POW3_REPLICATES = 20
DEFAULT_GROUP_BY = ("data", "model", "weights", "source_m", "peft", "peft_knob_value")
#: the figure formats --format accepts; PNG is always written (the report embeds it)
FIGURE_FORMATS = ("png", "pdf", "svg")
#: ``--help``: plain text (no reST), kept as written
HELP_DESCRIPTION = """\
Analyse the records of one or more sweeps: read every record.json under the dirs
given (no live process, no W&B API), fit one model per curve (the learning-curve
families averaged by their backtest; its line, rate, floor and n* everywhere, with
intervals that carry the seed noise and the family uncertainty), estimate the
data transferred against the from-scratch curve, draw the figures and write one
HTML report.

Failed and missing jobs, unreadable records and records without the metric are
reported in the summary, never fatal."""
HELP_EPILOG = """\
writes into --out (default <first sweep dir>/analysis):
  table.csv, table.parquet   one row per record, ok or not
  fits.csv                   each curve's model (family: its name and weights, rate
                             at the largest n, floor, with intervals, every family's
                             backtest) and pow3's a, b, c as a secondary view
  sample_complexity.csv, ratios.csv
                             with --target-error (and --baseline): n* per curve and
                             target, and n*(baseline)/n*(curve)
  transfer.csv, transfer_fit.json
                             data transferred vs the from-scratch curve (--scratch)
  error_vs_n.png, exponents.png, error_vs_source_m.png, transfer.png
                             (and .pdf/.svg with --format)
  report.html, summary.json

examples:
  python -m caulk.analyze logs/train/multiruns/<time>
  python -m caulk.analyze logs/demo/<time> --target-error 0.3,0.2 --baseline model=vit_femto
  python -m caulk.analyze logs/demo/<time>/linear logs/demo/<time>/lora --out report
  python -m caulk.analyze logs/train/runs/<time> --metric val_error --bootstrap 1000"""


@dataclass
class Analysis:
    out: Path
    table: pd.DataFrame
    fits: pd.DataFrame
    transfer: pd.DataFrame | None
    transfer_law: dict[str, Any] | None
    summary: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)
    answers: pd.DataFrame | None = None
    ratios: pd.DataFrame | None = None


@dataclass(frozen=True)
class Questions:
    """What the user asked of the curves: target errors, a baseline curve, the curve family
    (``auto``: chosen per curve by backtest), whether D_T may extrapolate the scratch curve."""

    targets: tuple[float, ...] = ()
    baseline: dict[str, str] | None = None
    family: str = "auto"
    allow_extrapolation: bool = False
    max_extrapolation: float = MAX_EXTRAPOLATION

    @classmethod
    def parse(
        cls,
        targets: str | list[float] | None = None,
        baseline: str | None = None,
        family: str = "auto",
        allow_extrapolation: bool = False,
        max_extrapolation: float = MAX_EXTRAPOLATION,
    ) -> Questions:
        """Check the flags (one-line CaulkConfigError each) before any work."""
        if not max_extrapolation >= 1:  # also NaN
            raise CaulkConfigError(
                f"--max-extrapolation must be a factor >= 1, got {max_extrapolation}"
            )
        if family not in ("auto", *FAMILIES):
            raise CaulkConfigError(
                f"--family {family!r} is unknown; choose auto or one of {', '.join(FAMILIES)}"
            )
        if isinstance(targets, str) or targets is None:
            targets = parse_targets(targets)
        else:
            targets = parse_targets(",".join(str(t) for t in targets))
        selector = _parse_selector(baseline, "--baseline") if baseline else None
        if selector == {}:
            raise CaulkConfigError(f"--baseline must look like key=value[,...], got {baseline!r}")
        if selector is not None and not targets:
            raise CaulkConfigError("--baseline compares n*(E): give --target-error too")
        return cls(tuple(targets), selector, family, allow_extrapolation, max_extrapolation)


def _parse_selector(text: str, flag: str = "--scratch") -> dict[str, str]:
    try:
        return dict(item.split("=", 1) for item in text.split(",") if item)
    except ValueError:
        raise CaulkConfigError(
            f"{flag} must look like key=value[,key=value], got {text!r}"
        ) from None


def parse_formats(formats: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"png,pdf"`` (or a list) as a tuple of figure formats, PNG first; CaulkConfigError for
    an unknown or empty one."""
    names = formats.split(",") if isinstance(formats, str) else list(formats)
    names = [str(f).strip().lower().lstrip(".") for f in names]
    bad = [f for f in names if f not in FIGURE_FORMATS]
    if bad or not names:
        raise CaulkConfigError(
            f"--format: unknown figure format {(bad[0] if bad else formats)!r}; "
            f"choose from {', '.join(FIGURE_FORMATS)} (comma-separated)"
        )
    return tuple(dict.fromkeys(["png", *names]))


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
    """Run the whole analysis of one or more sweep dirs and write its outputs into ``out``.

    ``questions`` (target errors, a baseline, the curve family) adds the sample-complexity
    answers; ``formats``: the figure formats (PNG always; PDF/SVG beside it). The outputs are
    written into a fresh dir next to ``out`` that then replaces it whole: a failed analysis
    leaves ``out`` as it was. An ``out`` that is unwritable, holds the sweep's records or holds
    anything but a previous analysis fails before any work (``caulk.analysis.output``).
    """
    formats = parse_formats(formats)
    if replicates < 0:
        raise CaulkConfigError(f"--bootstrap must be >= 0, got {replicates}")
    selector = _parse_selector(scratch)
    questions = questions or Questions()
    sweep_dirs = check_sweep_dirs(sweep_dirs)
    out = Path(out) if out else sweep_dirs[0] / "analysis"
    extra = ("wandb",) if wandb_mode != "off" else ()
    with staged(out, sweep_dirs, extra) as work:
        collection = collect_records(sweep_dirs)
        table = collection.table
        metric = metric or _default_metric(table)
        ok, skipped = collection.points(metric)
        keys, ok = _group_keys(table, ok, metric, group_by)
        _check_baseline(ok, keys, questions.baseline)
        files = _write_tables(work, table)
        models = curve_models(ok, keys, metric, questions.family, replicates, rng_seed)
        fits = _fits(ok, keys, metric, replicates, rng_seed, models)
        files["fits.csv"] = write_atomic(work / "fits.csv", lambda p: fits.to_csv(p, index=False))
        answers, ratio_table = _answers(work, ok, keys, metric, questions, models, files)
        transfer, law, transfer_note = _transfer(
            work, ok, fits, keys, metric, selector, scratch, low_data_max_n, questions, files
        )
        figures, by_source_m = _figures(
            work, ok, fits, keys, metric, transfer, law, files, formats, answers, models
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
        )
        files["summary.json"] = write_atomic(
            work / "summary.json",
            lambda p: p.write_text(json.dumps(summary, indent=2, default=str)),
        )
    files = {name: out / path.relative_to(work) for name, path in files.items()}
    if wandb_mode != "off" and len(ok):
        # optional wandb, and caulk.loggers pulls in pytorch_lightning (~5 s): only when W&B logs
        from caulk.analysis.wandb_aggregate import log_aggregate

        group = wandb_group or sweep_dirs[0].resolve().name
        summary["wandb_dir"] = log_aggregate(
            out, ok, fits, keys, metric, group, wandb_project, wandb_mode
        )
    return Analysis(out, table, fits, transfer, law, summary, files, answers, ratio_table)


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
        raise CaulkConfigError(f"--baseline {_selector_text(baseline)} matches no curve")


def _selector_text(selector: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in selector.items())


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
        "baseline": _selector_text(questions.baseline) if questions.baseline else None,
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
    selector: dict[str, str],
    scratch: str,
    low_data_max_n: float | None,
    questions: Questions,
    files: dict[str, Path],
) -> tuple[pd.DataFrame | None, dict[str, Any] | None, str]:
    """Effective data transferred against the from-scratch curve, and its law (with a note when
    there is none, or when points whose D_E lies beyond the from-scratch curve's largest
    measured n were left out of it); writes transfer.csv and transfer_fit.json."""
    is_scratch = _matches(ok, selector)
    if not (is_scratch.any() and (~is_scratch).any()):
        return None, None, f"no from-scratch curve ({scratch}) next to fine-tuned ones"
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
        law = fit_transfer_law(transfer, low_data_max_n, questions.allow_extrapolation)
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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m caulk.analyze",
        description=HELP_DESCRIPTION,
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("sweep_dirs", nargs="+", help="sweep (or run) dirs holding record.json files")
    p.add_argument(
        "--out",
        help="output dir (default: <first sweep dir>/analysis): a new or empty dir, or a previous "
        "analysis, which is replaced; a dir holding other files or the sweep is refused",
    )
    p.add_argument(
        "--metric",
        default=None,
        help="record field to fit (default: test_error, or excess_risk for theory records)",
    )
    p.add_argument(
        "--group-by",
        default=None,
        help="record fields defining a curve (default: the records' curve_keys, else "
        + ",".join(DEFAULT_GROUP_BY)
        + ")",
    )
    p.add_argument(
        "--bootstrap", type=int, default=200, help="bootstrap replicates over seeds (default 200)"
    )
    p.add_argument(
        "--scratch", default="peft=full,weights=none", help="selector of the from-scratch curve"
    )
    p.add_argument(
        "--low-data-max-n", type=float, default=None, help="largest n used in the D_T fit"
    )
    p.add_argument(
        "--wandb",
        default="off",
        choices=["off", "auto", "online", "offline"],
        help="log an aggregate W&B run",
    )
    p.add_argument(
        "--format",
        default="png",
        help="figure formats, comma-separated from png,pdf,svg (default png; PNG is always "
        "written, at 150 dpi, as the report embeds it)",
    )
    p.add_argument(
        "--target-error",
        default=None,
        help="errors E in (0, 1), e.g. 0.2,0.1: n*(E) per curve -> sample_complexity.csv",
    )
    p.add_argument(
        "--baseline",
        default=None,
        help="selector of the curve others are compared with, e.g. model=vit_pico: "
        "n*(baseline)/n*(curve) per target -> ratios.csv",
    )
    p.add_argument(
        "--family",
        default="auto",
        help="curve family: auto (chosen per curve by held-out extrapolation error) or one of "
        + ", ".join(FAMILIES),
    )
    p.add_argument(
        "--max-extrapolation",
        type=float,
        default=MAX_EXTRAPOLATION,
        help="flag an n* more than this many times the largest measured n (default "
        f"{MAX_EXTRAPOLATION:g}); it is still answered, with the family spread in its interval",
    )
    p.add_argument(
        "--allow-extrapolation",
        action="store_true",
        help="keep points whose D_E lies beyond the from-scratch curve's measured n in the D_T law",
    )
    p.add_argument("--wandb-project", default="caulk")
    p.add_argument("--wandb-group", default=None, help="W&B group (default: the sweep dir's name)")
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m caulk.analyze``: analyse sweep dirs, print the summary; 0 ok, 2 bad input."""
    args = _parser().parse_args(argv)
    try:
        questions = Questions.parse(
            args.target_error,
            args.baseline,
            args.family,
            args.allow_extrapolation,
            args.max_extrapolation,
        )
        result = analyze(
            args.sweep_dirs,
            args.out,
            args.metric,
            [k for k in args.group_by.split(",") if k] if args.group_by else None,
            args.bootstrap,
            args.scratch,
            args.low_data_max_n,
            args.wandb,
            args.wandb_project,
            args.wandb_group,
            formats=args.format,
            questions=questions,
        )
    except CaulkConfigError as e:
        print(f"caulk: error: {e}", file=sys.stderr)
        return 2
    print(format_analysis(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
