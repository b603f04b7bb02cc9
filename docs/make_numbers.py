"""The measured numbers the README and docs quote, written from their sources.

    python docs/make_numbers.py           # rewrite every generated region from docs/numbers/
    python docs/make_numbers.py --check   # exit 1, one line per stale region, if any differs

A source is a JSON file in ``docs/numbers/`` that a measurement wrote: the demo's ``demo.json``
or a benchmark's result (``--out`` file or last line). Each carries where, when and how it was
measured (``caulk.provenance``: ``machine``, ``commit``, ``date``, ``command``). A generated
region of a Markdown file is ``<!-- numbers: NAME -->TEXT<!-- /numbers -->``, inline in a
sentence or around whole lines, TEXT rendered from the sources by ``RENDERERS[NAME]``,
so a quoted figure is never typed by hand: re-measure, copy the JSON into ``docs/numbers/``, run
this script. ``tests/test_numbers.py`` runs ``--check`` and fails on a stale region, a region
with no renderer, a source without its provenance, or a timing in the README outside a region.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCES = REPO / "docs" / "numbers"
#: the Markdown files that hold generated regions
PAGES = ("README.md", "docs/zoo-and-demo.md", "docs/performance.md", "docs/analysis.md")
PROVENANCE = ("machine", "commit", "date", "command")
REGION = re.compile(r"(<!-- numbers: ([\w-]+) -->)(.*?)(<!-- /numbers -->)", re.S)


def load(name: str, sources: Path = SOURCES) -> dict:
    """The source ``name`` (``docs/numbers/<name>.json``), checked for its provenance."""
    data = json.loads((sources / f"{name}.json").read_text())
    stamp = data.get("provenance", data)  # benchmarks nest it, the demo writes it at the top
    missing = [k for k in PROVENANCE if not stamp.get(k)]
    if missing:
        raise ValueError(f"docs/numbers/{name}.json has no {', '.join(missing)}")
    return {**data, **{k: stamp[k] for k in PROVENANCE}}


def where(src: dict) -> str:
    """``2026-12-03, commit `527f10e`, 2-core AMD EPYC, 2 torch threads``."""
    m = src["machine"]
    return (
        f"{src['date'][:10]}, commit `{src['commit']}`, {m['cores']}-core {m['cpu']}, "
        f"{m['torch_threads']} torch threads"
    )


def source(name: str) -> str:
    """A README link to the measurement file (machine, commit, date, command inside)."""
    return f"[source](docs/numbers/{name}.json)"


def readme_demo(sources: Path) -> str:
    """The README's demo times (empty zoo, zoo cached)."""
    empty, cached = load("demo_empty_zoo", sources), load("demo_zoo_cached", sources)
    m = cached["machine"]
    return (
        f"The whole demo took {empty['total_s']:.0f} s with an empty zoo (pre-training included) "
        f"and {cached['total_s']:.0f} s with the zoo cached, on a {m['cores']}-core {m['cpu']} "
        f"({cached['date'][:10]}; sources: [empty zoo](docs/numbers/demo_empty_zoo.json), "
        "[zoo cached](docs/numbers/demo_zoo_cached.json); the "
        "first venv build adds 2–3 minutes; [timings and results](docs/zoo-and-demo.md#time))."
    )


def demo_time(sources: Path) -> str:
    """docs/zoo-and-demo.md#time: each demo run's stages, judged against its goal."""
    lines = [""]
    runs = (("demo_empty_zoo", "an empty zoo", 360), ("demo_zoo_cached", "the zoo cached", 90))
    for name, what, goal_s in runs:
        src = load(name, sources)
        met = "met" if src["total_s"] <= goal_s else "**not met**"
        stages = ", ".join(f"{k} sweep {v:.0f} s" for k, v in src["sweeps_s"].items())
        lines.append(
            f"- **{src['total_s']:.0f} s with {what}** ({src['zoo_entries_before']} zoo entries "
            f"before, {src['zoo_entries_after']} after): {stages}, analysis "
            f"{src['analysis_s']:.0f} s; goal {goal_s} s: {met}; {where(src)}; `{src['command']}`."
        )
    return "\n".join(lines) + "\n"


def readme_lcdb(sources: Path) -> str:
    """The README's LCDB coverage at 4x."""
    src = load("lcdb", sources)
    auto = src["metrics"]["4x"]["auto"]
    return f"{auto['coverage']:.0%} at 4x on {src['curves']} real LCDB curves ({source('lcdb')})"


def readme_tune_grid(sources: Path) -> str:
    """The README's cost of the tuned linear-probe grid against one fit."""
    src = load("tune_grid", sources)
    return (
        f"{src['points']} points × {src['candidates']} candidates trains as one computation: "
        f"{src['grid_s']:.2f} s, against {src['one_fit_s']:.2f} s for the untuned fit "
        f"(`{src['command']}`, {source('tune_grid')})."
    )


def _span(values: list[float]) -> str:
    """``96–98%`` (or ``97%`` when they agree)."""
    lo, hi = (f"{v:.0%}".rstrip("%") for v in (min(values), max(values)))
    return f"{lo}%" if lo == hi else f"{lo}–{hi}%"


def readme_planted(sources: Path) -> str:
    """The README's coverage spans on planted curves (pooled over truths)."""
    src = load("coverage", sources)
    pooled = [r for r in src["table"] if r["truth"] == "pooled"]
    inside = _span([r["coverage"] for r in pooled if r["target"] == "in range"])
    beyond = _span([r["coverage"] for r in pooled if r["target"] == "4x beyond"])
    return (
        f"{inside} coverage inside the measured range and {beyond} at 4x beyond it on planted "
        f"curves ({source('coverage')})"
    )


def readme_splits(sources: Path) -> str:
    """The README's coverage on digits' test splits, with and without the test rows."""
    src = load("split_coverage", sources)
    arms = {r["arm"]: r for r in src["table"]}
    both, seeds = arms["test rows + seeds"], arms["seeds only"]
    return (
        f"{round(both['coverage'] * both['cases'])} of {both['cases']} on digits' test splits "
        "against a truth from other splits, where seeds alone covered "
        f"{round(seeds['coverage'] * seeds['cases'])} ({source('split_coverage')})"
    )


#: the README's name of each arm of ``benchmarks/protocol_table.py``
PROTOCOL_ARMS = {
    "fixed": "fixed: 300 SGD steps, lr 1e-2 (old default)",
    "sgd_tuned": "SGD, budget grows with n, lr tuned per point",
    "ridge": "**ridge, λ per point (default)**",
    "sklearn": "scikit-learn L2-logistic, C per point (oracle)",
}
PROTOCOL_NS = (10, 160, 1047)


def readme_protocol(sources: Path) -> str:
    """The README's protocol table (mean test error per recipe) and its floor."""
    src = load("protocol_table", sources)
    cols = [src["ns"].index(n) for n in PROTOCOL_NS]
    rows = [
        f"It was measured with `{src['command']}` ({where(src)}; {source('protocol_table')}):",
        "",
        "| recipe | " + " | ".join(f"n={n}" for n in PROTOCOL_NS) + " | pow3 fit a / c | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for arm, label in PROTOCOL_ARMS.items():
        r = src["arms"][arm]
        errs = " | ".join(f"{r['mean_error'][i]:.3f}" for i in cols)
        rows.append(f"| {label} | {errs} | a={r['a']}, c={r['c']} | {r['seconds']:.1f} |")
    fixed_a = src["arms"]["fixed"]["a"]
    rows += ["", f"With the fixed recipe the curve levels off at a={fixed_a:.2f}."]
    return "\n" + "\n".join(rows)


def lcdb_table(sources: Path) -> str:
    """docs/analysis.md#lcdb: the pooled LCDB table."""
    src = load("lcdb", sources)
    lcdb = json.loads((sources / "lcdb.json").read_text())["machine"]["lcdb"]  # its own field
    walked, trivial = src["skipped_curves"], src["skipped_trivial_targets"]
    rows = [
        "",
        f"`{src['command']}` ({where(src)}, lcdb {lcdb}, "
        f"{src['timing']['total_s']:.0f} s; {walked['walked']} curves walked: "
        f"{walked['both_targets_trivial']} with both targets met at or below the cut, "
        f"{walked['fewer_than_4_sizes_below_cut']} with fewer than 4 sizes below it; "
        f"{trivial['4x']['reached_at_or_below_cut']} (4x) and "
        f"{trivial['8x']['reached_at_or_below_cut']} (8x) trivial targets skipped):",
        "",
        "| setting | method | cases | median \\|log2(n\\*/n)\\| | within 2x | 95% coverage "
        "| unreachable | at least | no upper end |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for setting, methods in src["metrics"].items():
        for method, m in methods.items():
            rows.append(
                f"| {setting} | {method} | {m['cases']} | {m['median_abs_log2']:.2f} "
                f"| {m['within_2x']:.0%} | {m['coverage']:.0%} ({m['with_interval']}) "
                f"| {m['unreachable']:.0%} | {m['at_least']:.0%} | {m['unbounded_above']:.0%} |"
            )
    return "\n".join(rows) + "\n"


def suffix_table(sources: Path) -> str:
    """docs/performance.md#batched-suffix: per-point vs batched LoRA curves."""
    src = load("suffix", sources)
    rows = [
        "",
        f"`{src['command']}` ({where(src)}):",
        "",
        "| model | per point | batched | ratio | same lr at every point | max test-error diff |",
        "|---|---:|---:|---:|---|---:|",
    ]
    cells = [*src["models"].items(), ("all three", src)]
    for model, m in cells:
        same = "yes" if m["same_selected_lr"] else "no"
        rows.append(
            f"| {model} | {m['per_point_s']:.1f} s | {m['batched_s']:.1f} s | {m['ratio']:.2f}x "
            f"| {same} | {m['max_test_error_diff']:.0e} |"
        )
    return "\n".join(rows) + "\n"


#: region name -> its text, from the sources
RENDERERS: dict[str, Callable[[Path], str]] = {
    "readme-demo": readme_demo,
    "demo-time": demo_time,
    "readme-lcdb": readme_lcdb,
    "readme-tune-grid": readme_tune_grid,
    "suffix-table": suffix_table,
    "readme-planted": readme_planted,
    "readme-splits": readme_splits,
    "readme-protocol": readme_protocol,
    "lcdb-table": lcdb_table,
}


def render(text: str, sources: Path = SOURCES) -> tuple[str, list[str]]:
    """``text`` with every region rewritten from the sources, and the names of those that
    changed. An unknown region name is a ValueError."""
    changed: list[str] = []

    def fill(match: re.Match) -> str:
        name = match.group(2)
        if name not in RENDERERS:
            raise ValueError(f"no renderer for the region 'numbers: {name}'")
        body = RENDERERS[name](sources)
        if body != match.group(3):
            changed.append(name)
        return match.group(1) + body + match.group(4)

    return REGION.sub(fill, text), changed


def outside_regions(text: str) -> str:
    """``text`` without its generated regions (what is typed by hand)."""
    return REGION.sub("", text)


def main(argv: list[str] | None = None, root: Path = REPO) -> int:
    """Rewrite (or, with ``--check``, only compare) the generated regions of ``PAGES``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 if a region is stale")
    args = p.parse_args(argv)
    stale = []
    for page in PAGES:
        path = root / page
        text, changed = render(path.read_text(), root / "docs" / "numbers")
        stale += [f"{page}: region '{name}' differs from its source" for name in changed]
        if changed and not args.check:
            path.write_text(text)
    for line in stale:
        print(("stale: " if args.check else "rewrote: ") + line, file=sys.stderr)
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
