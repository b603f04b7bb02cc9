"""``python -m caulk.analyze <sweep dir> [...]``: records -> table, fits, transfer, figures, report.

Reads only the ``record.json`` files on disk (no live process, no W&B API needed); failed and
missing jobs, and records that are unreadable or no points of the metric, are reported, never fatal.
This module is the command line; the work is ``caulk.analysis.pipeline`` (``analyze``,
``run_analysis``), its options ``caulk.analysis.options`` and its console ``caulk.analysis.console``.
"""

from __future__ import annotations

import argparse
import sys

from caulk.analysis.answers import MAX_EXTRAPOLATION
from caulk.analysis.console import format_analysis, model_line
from caulk.analysis.families import FAMILIES
from caulk.analysis.options import DEFAULT_GROUP_BY, AnalysisOptions, Questions
from caulk.analysis.pipeline import Analysis, analyze, run_analysis
from caulk.errors import CaulkConfigError

__all__ = [
    "Analysis",
    "AnalysisOptions",
    "Questions",
    "analyze",
    "format_analysis",
    "main",
    "model_line",
    "run_analysis",
]

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
