"""Regenerate the docs' demo figures and tables from a fresh run (``make figures``).

``python docs/make_figures.py [--out DIR] [--docs DIR] [demo options and overrides...]`` runs
``python -m caulk.demo --out DIR ...`` (any further arguments go to the demo: ``--no-lora
curve.seeds=[0]`` for a quick check), then writes into ``--docs`` (default ``docs/figures``):

- ``demo_error_vs_n.png``, ``demo_error_vs_source_m.png``, ``demo_exponents.png``: the report's
  figures;
- ``demo_tables.md``: where and how the numbers were measured (CPU, cores, torch threads, the
  zoo entries' threads, command, commit, wall time), then the tables the docs quote: mean test
  error per curve and n, the demo's small-n comparison, the fitted rates;
- ``demo_output.txt``: the demo's console output.

The docs include ``demo_tables.md`` as it is, so every number they show comes from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch

from caulk.provenance import cpu_model, git_commit

REPO = Path(__file__).resolve().parent.parent
#: the report's figures the docs show: file in the demo's analysis dir -> file in the docs
FIGURES = {
    "error_vs_n.png": "demo_error_vs_n.png",
    "error_vs_source_m.png": "demo_error_vs_source_m.png",
    "exponents.png": "demo_exponents.png",
}
SMALL_N = 100  # the demo's own "small n" (caulk.demo.SMALL_N)


def zoo_threads(table: pd.DataFrame, zoo_dir: Path) -> dict[str, int | None]:
    """Torch threads each zoo entry the records name was pre-trained with (None: not recorded)."""
    names = sorted({str(n) for n in table.get("zoo_entry", pd.Series(dtype=str)).dropna()})
    threads = {}
    for name in names:
        meta = zoo_dir / f"{name}.json"
        threads[name] = json.loads(meta.read_text()).get("torch_threads") if meta.exists() else None
    return threads


def markdown_table(frame: pd.DataFrame) -> str:
    """``frame`` (index included) as a GitHub-flavoured markdown table."""
    frame = frame.reset_index()
    header = [str(c) for c in frame.columns]
    rows = [[_cell(v) for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "—" if pd.isna(value) else f"{value:.3f}"
    return str(value)


def _ok_points(table: pd.DataFrame) -> pd.DataFrame:
    ok = table[table["status"] == "ok"].copy()
    ok["source_m"] = pd.to_numeric(ok["source_m"], errors="coerce").astype("Int64")
    return ok


def error_by_n(table: pd.DataFrame) -> pd.DataFrame:
    """Mean test error over seeds: a row per (model, peft, source_m), a column per n."""
    ok = _ok_points(table)
    mean = ok.groupby(["model", "peft", "source_m", "n"])["test_error"].mean()
    wide = mean.unstack("n")
    wide.columns = [f"n={n}" for n in wide.columns]
    return wide


def small_n_error(table: pd.DataFrame, small_n: int = SMALL_N) -> pd.DataFrame:
    """Mean test error over n <= ``small_n`` and seeds of the linear probes: a row per model, a
    column per source size m (what the demo prints)."""
    ok = _ok_points(table)
    linear = ok[(ok["peft"] == "linear") & (ok["n"] <= small_n)]
    wide = linear.groupby(["model", "source_m"])["test_error"].mean().unstack("source_m")
    wide.columns = [f"m={m}" for m in wide.columns]
    return wide


def fitted_rates(fits: pd.DataFrame) -> pd.DataFrame:
    """Each curve's model, local rate at its largest n with its 95% interval and floor, from
    ``fits.csv`` (the model the answers use)."""
    cols = ["model", "peft", "source_m", "family", "rate", "rate_lo", "rate_hi", "asymptote"]
    return fits[[c for c in cols if c in fits.columns]].set_index(["model", "peft", "source_m"])


def provenance(
    command: list[str], seconds: float, table: pd.DataFrame, zoo_dir: Path, commit: str
) -> str:
    """Where and how the numbers were measured (``commit``: the checkout the demo ran from), as a
    markdown list."""
    threads = zoo_threads(table, zoo_dir)
    zoo = ", ".join(f"{k}: {v}" for k, v in threads.items()) or "none"
    omp = os.environ.get("OMP_NUM_THREADS", "unset")
    return "\n".join(
        [
            f"- **measured on** {cpu_model()}, {os.cpu_count()} cores, torch "
            f"{torch.__version__} with {torch.get_num_threads()} threads "
            f"(`OMP_NUM_THREADS` {omp}), {platform.system()} {platform.release()}",
            f"- **zoo entries** (torch threads they were pre-trained with): {zoo}",
            f"- **command** `{' '.join(command)}` (wall time {seconds:.0f} s, "
            f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, commit `{commit}`)",
            "- **reproduce** `make figures` (this file, the figures and `demo_output.txt`); "
            "the numbers are bit-identical on the same machine with the same thread count only",
        ]
    )


def tables_markdown(table: pd.DataFrame, fits: pd.DataFrame, prov: str) -> str:
    """The ``demo_tables.md`` the docs include: provenance, then the three tables."""
    parts = [
        prov,
        "",
        "Mean test error over seeds, per curve and n:",
        "",
        markdown_table(error_by_n(table)),
        "",
        f"Linear probes, mean test error over n ≤ {SMALL_N} and seeds, per source size m "
        "(m=0: random init):",
        "",
        markdown_table(small_n_error(table)),
        "",
        "Each curve's model (family: the families and their weights), its local rate at the largest n with its 95% interval, and its floor:",
        "",
        markdown_table(fitted_rates(fits)),
    ]
    return "\n".join(parts) + "\n"


def write_docs(
    demo_dir: Path,
    docs: Path,
    command: list[str],
    seconds: float,
    output: str,
    commit: str = "unknown",
):
    """Copy the demo's figures into ``docs`` and write its tables and console output there."""
    analysis = demo_dir / "analysis"
    docs.mkdir(parents=True, exist_ok=True)
    for source, target in FIGURES.items():
        if (analysis / source).exists():
            shutil.copyfile(analysis / source, docs / target)
        else:  # never leave an older run's figure beside this run's tables
            (docs / target).unlink(missing_ok=True)
    table = pd.read_csv(analysis / "table.csv")
    fits = pd.read_csv(analysis / "fits.csv")
    zoo_dir = Path(os.environ.get("CAULK_CACHE", Path.home() / ".cache" / "caulk")) / "zoo"
    prov = provenance(command, seconds, table, zoo_dir, commit)
    (docs / "demo_tables.md").write_text(tables_markdown(table, fits, prov))
    (docs / "demo_output.txt").write_text(output)


def run_teed(command: list[str]) -> tuple[int, str]:
    """Run ``command``, echoing its output (stdout and stderr) as it comes; its exit code and
    output."""
    lines = []
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        for line in proc.stdout:
            print(line, end="", flush=True)
            lines.append(line)
    return proc.returncode, "".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the demo, then write its figures and tables into the docs."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None, help="the demo's dir (default: a fresh temp dir)")
    p.add_argument(
        "--docs", default=str(REPO / "docs" / "figures"), help="where the docs' files go"
    )
    args, demo_args = p.parse_known_args(argv)
    demo_dir = Path(args.out or tempfile.mkdtemp(prefix="caulk-figures-")) / "demo"
    command = ["python", "-m", "caulk.demo", *demo_args]
    commit = git_commit()  # the code the demo runs, before anything can change the checkout
    start = time.perf_counter()
    code, output = run_teed(
        [sys.executable, "-m", "caulk.demo", "--out", str(demo_dir), *demo_args]
    )
    seconds = time.perf_counter() - start
    if code != 0:
        return code
    write_docs(demo_dir, Path(args.docs), command, seconds, output, commit)
    print(f"[figures] demo figures and tables written to {args.docs} (demo dir {demo_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
