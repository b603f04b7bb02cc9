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
PAGES = (
    "README.md",
    "docs/zoo-and-demo.md",
    "docs/performance.md",
    "docs/analysis.md",
    "docs/protocol.md",
    "docs/adaptive.md",
)
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
        f"{m['torch_threads']} torch thread{'s' if m['torch_threads'] != 1 else ''}"
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
        if src.get("zoo_build_s"):  # the zoo stage (parallel pre-training) before the sweeps
            stages = f"zoo pre-training {src['zoo_build_s']:.0f} s, {stages}"
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


#: the README's and docs/protocol.md's name of each arm of ``benchmarks/protocol_table.py``
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


def _goal(met: bool) -> str:
    return "met" if met else "**not met**"


def _perf_row(label: str, src: dict, result: str, goal: str) -> str:
    return f"| {label} | `{src['command']}` | {result} | {goal} | {src['date'][:10]}, `{src['commit']}` |"


def _floor_result(src: dict) -> str:
    return (
        f"{src['cached_s']:.2f} s vs {src['extraction_pass_s']:.2f} s: "
        f"**{src['cached_over_extraction']:.2f}x** the pass"
    )


def performance_table(sources: Path) -> str:
    """docs/performance.md: the table of the speed benchmarks, each against its goal."""
    curve, sweep, overhead = (load(n, sources) for n in ("curve", "sweep", "overhead"))
    partial = load("partial_k", sources)
    floors = {m: load(f"floor_{m}", sources) for m in ("vit_t", "vit_micro", "vit_nano")}
    m = curve["machine"]
    rows = [
        "",
        f"Machine for every row: {m['cores']}-core {m['cpu']}, {m['torch_threads']} torch "
        f"threads, no GPU, nothing else running; each row gives its command, date and commit.",
        "",
        "| benchmark | command | result | goal | measured |",
        "|---|---|---|---|---|",
        _perf_row(
            f"1. linear-probe curve, {curve['points']} points, {curve['steps_per_point']} "
            f"steps/point, {curve['model']}: cached (batched heads) vs uncached",
            curve,
            f"{curve['cached_s']:.2f} s (runs {', '.join(map(str, curve['cached_runs_s']))}) vs "
            f"{curve['uncached_s']:.1f} s: **{curve['ratio']:.0f}x**; max test-error diff "
            f"{curve['max_test_error_diff']:.0e}",
            f"≥ 20x: {_goal(curve['ratio'] >= 20)}",
        ),
    ]
    for i, (model, src) in enumerate(floors.items()):
        label = "1b. the cached curve against one extraction pass (the floor)" if i == 0 else ""
        goal = f"≤ 1.5x: {_goal(src['cached_over_extraction'] <= 1.5)}"
        rows.append(_perf_row(label or f"1b, {model}", src, _floor_result(src), goal))
    rows.append(
        _perf_row(
            f"1b, {curve['model']} (row 1)",
            curve,
            _floor_result(curve),
            f"≤ 1.5x: {_goal(curve['cached_over_extraction'] <= 1.5)}",
        )  # fmt: skip
    )
    for key, label, goal in (
        ("partial", f"2. `peft=partial` k={partial['k']}, {partial['model']}", 3.0),
        ("lora_last_k", "2b. `peft=lora peft.last_k_blocks=1`, same curve", None),
    ):
        r = partial[key]
        rows.append(
            _perf_row(
                f"{label}: cached prefix ({r['train_loop']}) vs uncached",
                partial,
                f"{r['cached_s']:.1f} s vs {r['uncached_s']:.1f} s: **{r['ratio']:.2f}x**; max "
                f"test-error diff {r['max_test_error_diff']:.0e}",
                "—" if goal is None else f"≥ {goal:.0f}x: {_goal(r['ratio'] >= goal)}",
            )
        )
    rows.append(
        _perf_row(
            f"3. LoRA (every block) through caulk/Lightning vs a bare PyTorch loop, "
            f"{overhead['model']}, batch {overhead['batch_size']}",
            overhead,
            f"{overhead['caulk_images_per_s']:.1f} vs {overhead['bare_images_per_s']:.1f} "
            f"images/s: **{overhead['ratio']:.2f}x**",
            f"≥ 0.9x: {_goal(overhead['ratio'] >= 0.9)}",
        )
    )
    rows.append(
        _perf_row(
            f"4. {sweep['points']}-point grid, {sweep['steps_per_point']} steps/point, "
            f"{sweep['peft']}: one curve process vs one process per point",
            sweep,
            f"{sweep['curve_process_s']:.1f} s vs {sweep['process_per_point_s']:.1f} s: "
            f"**{sweep['ratio']:.1f}x**",
            "—",
        )
    )
    return "\n".join(rows) + "\n"


#: the docs' names of benchmarks/threads.py's workloads and settings
THREAD_WORKLOADS = {
    "train": "train step (ViT-Pico, batch 64, AdamW)",
    "extract": "extraction (256 images, no grad)",
    "ridge": "ridge path (8 points, 400 rows, 12 λ)",
    "caulk": "`python -m caulk.train` (Lightning)",
}
THREAD_SETTINGS = {
    "default": "torch default",
    "passive": "2 threads, `OMP_WAIT_POLICY=PASSIVE`",
    "one": "1 thread",
    "caulk": "**caulk**",
}


def threads_table(sources: Path) -> str:
    """docs/performance.md#threads: seconds per step alone and shared, per setting."""
    src = load("threads", sources)
    rows = [
        "",
        f"`{src['command']}` ({where(src)}, {src['total_s']:.0f} s; `caulk`: wall time of "
        f"`python -m caulk.train peft=full data.n=50 budget.mode=fixed tune=none "
        f"trainer.max_steps={src['steps']}`, start-up included; the others: median seconds per "
        f"step over {src['seconds']:g} s):",
        "",
        "| workload | setting | alone | two at once, each | together vs alone |",
        "|---|---|---:|---:|---:|",
    ]
    for workload, by_setting in src["cells"].items():
        for i, (setting, c) in enumerate(by_setting.items()):
            alone, shared = c["alone"]["each_s"], c["shared"]["each_s"]
            unit = " s" if workload == "caulk" else ""
            name = THREAD_WORKLOADS.get(workload, workload) if i == 0 else ""
            rows.append(
                f"| {name} | {THREAD_SETTINGS.get(setting, setting)} | {alone:.4g}{unit} "
                f"| {shared:.4g}{unit} | {2 * alone / shared:.2f}x |"
            )
    return "\n".join(rows) + "\n"


def threads_summary(sources: Path) -> str:
    """docs/performance.md#threads: what the defaults and caulk's setting do, from the table."""
    cells = load("threads", sources)["cells"]

    def together(c: dict) -> float:
        return 2 * c["alone"]["each_s"] / c["shared"]["each_s"]

    worst = min(cells, key=lambda w: together(cells[w]["default"]))
    alone_cost = [
        c["caulk"]["alone"]["each_s"] / c["default"]["alone"]["each_s"] for c in cells.values()
    ]
    shared = [
        c["caulk"]["shared"]["each_s"] / c["caulk"]["alone"]["each_s"] for c in cells.values()
    ]
    pair = [together(c["caulk"]) for c in cells.values()]
    default_shared = max(
        c["default"]["shared"]["each_s"] / c["default"]["alone"]["each_s"] for c in cells.values()
    )
    return (
        f"with torch's defaults the pair did as little as {together(cells[worst]['default']):.2f}x "
        f"the work of one process alone ({THREAD_WORKLOADS.get(worst, worst)}), each process up to "
        f"{default_shared:.0f}x slower than alone; with caulk's setting, alone costs "
        f"{min(alone_cost):.2f}–{max(alone_cost):.2f}x torch's default time, and shared each process "
        f"is {min(shared):.2f}–{max(shared):.2f}x slower than alone (a fair share is 2x), the pair "
        f"doing {min(pair):.2f}–{max(pair):.2f}x the work of one alone."
    )


def compile_check(sources: Path) -> str:
    """docs/performance.md: the CPU check of the compiled path against eager."""
    src = load("overhead_compile", sources)
    return (
        f"`{src['command']}` ({where(src)}): the compiled and eager losses of the first "
        f"{src['compile_loss_steps_checked']} steps differ by at most {src['compile_max_loss_diff']:.1e}; compiled "
        f"caulk {src['caulk_images_per_s']:.0f} images/s, compiled bare loop "
        f"{src['bare_images_per_s']:.0f}, eager bare loop {src['bare_eager_images_per_s']:.0f} "
        f"({src['timed_steps']} timed steps each)."
    )


def suffix_goal(sources: Path) -> str:
    """docs/performance.md#batched-suffix: the sweep's ratio against the 5x goal."""
    src = load("suffix", sources)
    met = "met" if src["ratio"] >= 5 else "**not met** on this CPU"
    return f"The goal is ≥ 5x over the three models: {src['ratio']:.2f}x, {met}."


#: width × depth of caulk's zoo architectures (``caulk/zoo/models.py``)
ZOO_SHAPES = {"caulk_vit_femto": "32 × 3", "caulk_vit_pico": "64 × 4", "caulk_vit_nano": "128 × 6"}


def zoo_table(sources: Path) -> str:
    """docs/zoo-and-demo.md: the m=4000 entries the demo pre-trained with an empty zoo."""
    src = load("demo_empty_zoo", sources)
    entries = sorted(
        (e for e in src["zoo"] if e["source_m"] == 4000), key=lambda e: e["num_params"]
    )
    rows = [
        "",
        f"From `demo.json` of the empty-zoo demo ({where(src)}; `{src['command']}`):",
        "",
        "| `model=` | params (backbone) | width × depth | pre-training at m=4000 (threads) "
        "| source accuracy (256 classes) |",
        "|---|---|---|---|---|",
    ]
    for e in entries:
        rows.append(
            f"| `{e['arch'].removeprefix('caulk_')}` | {e['num_params']:,} "
            f"| {ZOO_SHAPES.get(e['arch'], '?')} | {e['wall_time_s']:.1f} s ({e['torch_threads']}) "
            f"| {e['source_accuracy']:.3f} |"
        )
    return "\n".join(rows) + "\n"


def zoo_build(sources: Path) -> str:
    """docs/performance.md#zoo-build: the demo's zoo built in one process against in parallel."""
    src = load("zoo_build", sources)
    seq, par = src["sequential"], src["parallel"]
    rows = [
        "",
        f"`{src['command']}` ({where(src)}; {src['steps']} steps per entry):",
        "",
        f"| entry | one process: s (threads) | accuracy | {src['workers']} workers: s (threads) "
        "| accuracy |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, one in seq["entries"].items():
        two = par["entries"][name]
        rows.append(
            f"| {name} | {one['wall_time_s']:.1f} ({one['torch_threads']}) "
            f"| {one['source_accuracy']:.3f} | {two['wall_time_s']:.1f} ({two['torch_threads']}) "
            f"| {two['source_accuracy']:.3f} |"
        )
    rows += [
        f"| **all, wall time** | **{seq['seconds']:.1f} s** | | **{par['seconds']:.1f} s** "
        f"| **{src['ratio']:.2f}x** faster |",
    ]
    return "\n".join(rows) + "\n"


def split_coverage_table(sources: Path) -> str:
    """docs/analysis.md#test-rows: coverage of a truth from other splits, per arm."""
    rows = [
        "",
        "| command | splits (independent test sets) | answers | seeds seen | arm | coverage of 80 "
        "| median log2 width | measured |",
        "|---|---:|---:|---:|---|---:|---:|---|",
    ]
    for name in ("split_coverage", "split_coverage_12"):
        src = load(name, sources)
        for i, r in enumerate(src["table"]):
            head = (
                f"`{src['command']}` ({src['seconds']:.0f} s) | {src['test_sets']} | {r['cases']} "
                f"| {src['k']}"
                if i == 0
                else " | | |"
            )
            rows.append(
                f"| {head} | {r['arm']} | {r['coverage']:.2f} | {r['median_log2_width']:.2f} "
                f"| {where(src) if i == 0 else ''} |"
            )
    return "\n".join(rows) + "\n"


def analysis_speed(sources: Path) -> str:
    """docs/analysis.md#speed: the whole analysis of a planted sweep."""
    src = load("analysis_speed", sources)
    met = "met" if src["goal_met"] else "**not met**"
    return (
        f"`{src['command']}`: {src['records']} records in {src['seconds']:.1f} s, "
        f"{src['ms_per_record']:.0f} ms per record, goal {met} ({where(src)})."
    )


TRUTHS = ("pow2", "pow3", "pow4", "exp3", "mmf4")


def _coverage_rows(table: list[dict]) -> list[str]:
    rows = [
        "| target | seeds | pooled coverage | per truth: "
        + " / ".join(TRUTHS)
        + " | median \\|log2(n\\*/truth)\\| | not determinable or at least |",
        "|---|---:|---:|---|---:|---:|",
    ]
    cells = {(r["target"], r["seeds"], r["truth"]): r for r in table}
    for target, seeds in sorted(
        {(r["target"], r["seeds"]) for r in table}, key=lambda k: (k[0] != "in range", k[1])
    ):
        pooled = cells[(target, seeds, "pooled")]
        per = " / ".join(f"{cells[(target, seeds, t)]['coverage']:.2f}" for t in TRUTHS)
        rows.append(
            f"| {target} | {seeds} | {pooled['coverage']:.2f} | {per} | "
            f"{pooled['median_log2']:.2f} | {pooled['not_determinable'] + pooled['at_least']:.0%} |"
        )
    return rows


def coverage_table(sources: Path) -> str:
    """docs/analysis.md#coverage: planted-curve coverage per target, seeds and truth."""
    src = load("coverage", sources)
    head = f"`{src['command']}` ({where(src)}, {src['seconds']:.0f} s, {src['trials']} trials per truth):"
    return "\n".join(["", head, "", *_coverage_rows(src["table"])]) + "\n"


def coverage_rerun(sources: Path) -> str:
    """docs/analysis.md#coverage: the pooled 3-seed cells with more trials, one sentence."""
    src = load("coverage_3seeds_40", sources)
    pooled = {r["target"]: r for r in src["table"] if r["truth"] == "pooled"}
    parts = [f"{t} {r['coverage']:.2f}" for t, r in pooled.items()]
    return f"`{src['command']}` ({where(src)}, {src['seconds']:.0f} s): pooled {', '.join(parts)}."


def probe_seeds_table(sources: Path) -> str:
    """docs/analysis.md#probe-seeds: k-seed subsets of a real 20-seed ridge-probe curve."""
    src = load("probe_seeds", sources)
    rows = [
        "",
        f"`{src['command']}` ({where(src)}, {src['seconds']:.0f} s):",
        "",
        "| target | seeds | coverage | median \\|log2\\| | no n\\* (not determinable / at least) "
        "| coverage of the answered |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    order = ("in range", "2x beyond", "4x beyond")
    for r in sorted(src["table"], key=lambda r: (order.index(r["target"]), r["seeds"])):
        med = "–" if r["median_log2"] != r["median_log2"] else f"{r['median_log2']:.2f}"
        answered = r["coverage_answered"]
        ans = "–" if answered is None or answered != answered else f"{answered:.2f}"
        rows.append(
            f"| {r['target']} | {r['seeds']} | {r['coverage']:.2f} | {med} | "
            f"{r['not_determinable'] + r['at_least']:.0%} | {ans} |"
        )
    return "\n".join(rows) + "\n"


def lcdb_goals(sources: Path) -> str:
    """docs/analysis.md#lcdb: the paired medians and the goals, from the pooled run."""
    src = load("lcdb", sources)
    m, paired = src["metrics"], src["paired_medians"]
    pairs = "; ".join(
        f"{s} "
        + ", ".join(
            f"{p['auto']:.2f} vs {fam} {p[fam]:.2f} ({p['cases']} curves)"
            for fam, p in fams.items()
        )
        for s, fams in paired.items()
    )
    wins = sum(p["auto"] <= p[fam] for fams in paired.values() for fam, p in fams.items())
    total = sum(len(fams) for fams in paired.values())
    a4, a8 = m["4x"]["auto"], m["8x"]["auto"]

    def ok(flag: bool) -> str:
        return "met" if flag else "not met"

    return (
        f"\nOn the curves both answer (`paired_medians`), auto's median |log2| is at or below the "
        f"fixed family's in {wins} of {total} pairs: {pairs}.\n\n"
        f"Against the goals, pooled: coverage {a4['coverage']:.1%} at 4x "
        f"({round(a4['coverage'] * a4['with_interval'])} of {a4['with_interval']}; goal 90%: "
        f"{ok(a4['coverage'] >= 0.9)}) and {a8['coverage']:.1%} at 8x (goal 85%: "
        f'{ok(a8["coverage"] >= 0.85)}); "unreachable" for a reached target '
        f"{a4['unreachable']:.1%} at 4x and {a8['unreachable']:.1%} at 8x (goal 2%: "
        f"{ok(a4['unreachable'] <= 0.02)} / {ok(a8['unreachable'] <= 0.02)}); abstentions, all "
        f'"at least" lower bounds, {a4["at_least"] + a4["not_determinable"]:.0%} at 4x and '
        f"{a8['at_least'] + a8['not_determinable']:.0%} at 8x (goal 25%: "
        f"{ok(a4['at_least'] + a4['not_determinable'] <= 0.25)} / "
        f"{ok(a8['at_least'] + a8['not_determinable'] <= 0.25)}); auto's own median, over the "
        f"cases it answers, {a4['median_abs_log2']:.2f} at 4x against pow4's "
        f"{m['4x']['pow4']['median_abs_log2']:.2f} and {a8['median_abs_log2']:.2f} at 8x against "
        f"{m['8x']['pow4']['median_abs_log2']:.2f}.\n"
    )


def protocol_table(sources: Path) -> str:
    """docs/protocol.md: every recipe's mean test error per n, fit and seconds."""
    src = load("protocol_table", sources)
    rows = [
        "",
        f"`{src['command']}` ({where(src)}):",
        "",
        "| recipe | " + " | ".join(f"n={n}" for n in src["ns"]) + " | fit a / c | seconds |",
        "|---|" + "---|" * len(src["ns"]) + "---|---|",
    ]
    for arm, label in PROTOCOL_ARMS.items():
        r = src["arms"].get(arm)
        if r is None:
            continue
        errs = " | ".join(f"{e:.3f}" for e in r["mean_error"])
        rows.append(f"| {label} | {errs} | a={r['a']}, c={r['c']} | {r['seconds']:.1f} |")
    return "\n".join(rows) + "\n"


def tune_grid_cost(sources: Path) -> str:
    """docs/protocol.md#tune: one fit, the grid as one computation, the per-candidate loop."""
    src = load("tune_grid", sources)
    return (
        f"one untuned fit {src['one_fit_s']:.2f} s, the {src['candidates']}-candidate grid as one "
        f"computation {src['grid_s']:.2f} s ({src['grid_over_one_fit']:.1f}x one fit), the "
        f"per-candidate loop {src['loop_s']:.2f} s (`{src['command']}`, {where(src)})."
    )


def tuned_curve_table(sources: Path) -> str:
    """docs/protocol.md#converged-linear-probes: caulk's lbfgs curve vs scikit-learn's grid."""
    rows = [
        "",
        "| command | caulk `lbfgs` | scikit-learn grid | ratio (goal ≥ 50) | same λ "
        "| max \\|Δ test error\\| (goal ≤ 0.005) | one extraction pass "
        "| curve / extraction (goal ≤ 3) | measured |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("tuned_curve_vit_t", "tuned_curve_vit_pico"):
        src = load(name, sources)
        rows.append(
            f"| `{src['command']}` (D = {src['feature_dim']}) | {src['caulk_s']:.1f} s "
            f"| {src['sklearn_s']:.1f} s | {src['ratio']:.2f}x | {src['same_lambda']} of "
            f"{src['points']} | {src['max_abs_test_error_diff']:.3f} | {src['extraction_s']:.1f} s "
            f"| {src['curve_over_extraction']:.2f}x | {where(src)} |"
        )
    return "\n".join(rows) + "\n"


def adaptive_table(sources: Path) -> str:
    """docs/adaptive.md#coverage: adaptive runs against fixed grids on planted curves."""
    src = load("adaptive", sources)
    rows = [
        "",
        f"`{src['command']}` ({where(src)}, {src['seconds']:.0f} s; precision "
        f"{src['precision']:g}, {src['trials_per_truth']} trials per truth):",
        "",
        "| arm | trials | 95% coverage of the true n\\* | reached the precision | mean points "
        "| mean examples |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for arm, r in src["pooled"].items():
        rows.append(
            f"| {arm} | {r['trials']} | {r['coverage']:.2f} | {r['precise']:.2f} "
            f"| {r['mean_points']:.1f} | {r['mean_examples']:,.0f} |"
        )
    rows += [
        "",
        f"The smallest fixed grid that reaches the precision spent "
        f"{src['points_ratio_vs_smallest_grid']:.2f}x the points of the value rule's runs where "
        f"every point costs the same, and {src['examples_ratio_vs_smallest_grid']:.2f}x the "
        "examples of its runs where a point's seconds grow with n (goal: the grid spends ≥ 3x "
        "the adaptive run's compute, with the coverage kept).",
    ]
    real = load("adaptive_real", sources) if (sources / "adaptive_real.json").exists() else src
    if real.get("real"):
        rows += [
            "",
            f"On the demo's real curves (digits, n\\* at E = {real['real_target']:g}; the truth "
            "unknown, so compute only; the probe is the default ridge"
            + (
                ", LoRA trains the last block with its lr tuned per point"
                if any("LoRA" in name for name in real["real"])
                else ""
            )
            + (f"; measured by `{real['command']}` ({where(real)})" if real is not src else "")
            + "):",
            "",
            "| curve | adaptive: points, training s, n\\* [95%], hi/lo | smallest precise grid "
            "(or the largest tried): k n, points, training s, n\\* [95%], hi/lo "
            "| grid / adaptive, training s | wall s, adaptive / grid |",
            "|---|---|---|---:|---:|",
        ]
        for name, r in real["real"].items():
            a, g = r["adaptive"], r["smallest_precise_grid"]
            wall = f"{a['wall_s']:.1f} / {g['wall_s']:.1f}" if "wall_s" in a else "not measured"
            rows.append(
                f"| {name} | {a['points']}, {a['train_s']:.1f} s, {_answer(a['answer'])} "
                f"| {g['k']}, {g['points']}, {g['train_s']:.1f} s, {_answer(g['answer'])} "
                f"| {r['train_s_ratio']:.2f}x | {wall} |"
            )
        rows += _grids_tried(real["real"])
    return "\n".join(rows) + "\n"


def _grids_tried(real: dict) -> list[str]:
    """One line per real curve: the fixed grids tried, smallest first, with each one's hi/lo."""
    lines = [
        f"- {name}: k = "
        + ", ".join(f"{g['k']} ({g['train_s']:.3g} s, {_hi_lo(g['answer'])})" for g in tried)
        for name, r in real.items()
        if (tried := r.get("grids_tried"))
    ]
    return (
        [
            "",
            "Every fixed grid tried, smallest first: k (training s, hi/lo of its n* interval):",
            "",
            *lines,
        ]
        if lines
        else []
    )


def adaptive_ratio_table(sources: Path) -> str:
    """docs/adaptive.md#baseline: the adaptive ratio interval's coverage on planted pairs."""
    src = load("adaptive_ratio", sources)
    rows = [
        "",
        f"`{src['command']}` ({where(src)}, {src['seconds']:.0f} s; true ratio "
        f"{src['factor']:g}, precision {src['precision']:g}, rule {src['rule']}, "
        f"{src['trials_per_truth']} trials per truth):",
        "",
        "| truth | trials | 95% coverage of the true ratio | reached the precision "
        "| mean points (both curves) | mean examples |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in [*src["per_truth"].items(), ("pooled", src["pooled"])]:
        rows.append(
            f"| {name} | {r['trials']} | {r['coverage']:.2f} | {r['precise']:.2f} "
            f"| {r['mean_points']:.1f} | {r['mean_examples']:,.0f} |"
        )
    stops = ", ".join(f"{k} {v}" for k, v in src["stops"].items())
    return "\n".join([*rows, "", f"Why the runs stopped: {stops}."]) + "\n"


def _n(value) -> str:
    return "–" if value is None else f"{value:,.0f}"


def _hi_lo(a: dict) -> str:
    """``1.26``: the ratio hi/lo of an answer's n* interval ("–" when it is open)."""
    lo, hi = a.get("n_star_lo"), a.get("n_star_hi")
    return f"{hi / lo:.2f}" if lo and hi and lo > 0 and hi != float("inf") else "–"


def _answer(a: dict) -> str:
    """``273 [239, 302], 1.26``: n*, its interval and the interval's ratio hi/lo."""
    lo, hi = a.get("n_star_lo"), a.get("n_star_hi")
    return f"{_n(a.get('n_star'))} [{_n(lo)}, {_n(hi)}], {_hi_lo(a)}"


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
    "performance-table": performance_table,
    "threads-table": threads_table,
    "threads-summary": threads_summary,
    "compile-check": compile_check,
    "suffix-goal": suffix_goal,
    "zoo-table": zoo_table,
    "zoo-build": zoo_build,
    "split-coverage-table": split_coverage_table,
    "analysis-speed": analysis_speed,
    "coverage-table": coverage_table,
    "coverage-rerun": coverage_rerun,
    "probe-seeds-table": probe_seeds_table,
    "lcdb-goals": lcdb_goals,
    "protocol-table": protocol_table,
    "tune-grid-cost": tune_grid_cost,
    "tuned-curve-table": tuned_curve_table,
    "adaptive-table": adaptive_table,
    "adaptive-ratio-table": adaptive_ratio_table,
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
