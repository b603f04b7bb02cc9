"""The demo behind ``make demo``: zoo backbones of three sizes x {linear, lora} x n x seeds on
digits, an m sweep (m=0 is random init), then ``caulk.analyze`` into one HTML report.

``python -m caulk.demo`` runs three Hydra multiruns of ``experiment=demo`` (each a real
``caulk.train -m`` multirun, run in this process so the imports are paid once; missing zoo
entries are pre-trained on first use and cached), analyses them together, and prints what the report shows: whether the pre-trained
backbones beat the random ones at small n, and how the error moves with the source size m.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import shlex
import sys
import time
import traceback
from contextlib import contextmanager, redirect_stderr, redirect_stdout, suppress
from datetime import datetime
from pathlib import Path
from typing import NoReturn

import pandas as pd
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from caulk.analysis.console import format_analysis
from caulk.analysis.options import Questions
from caulk.analysis.pipeline import analyze
from caulk.atomic import write_json_atomic
from caulk.cli import CONFIG_DIR, check_group_overrides, take_rejected
from caulk.errors import CaulkConfigError, check_writable, one_line
from caulk.plan import validate_config
from caulk.progress import progress_to
from caulk.provenance import provenance
from caulk.threads import usable_cpus
from caulk.train import hydra_main
from caulk.zoo.parallel import ZooJob, build_parallel, missing

MODELS = ("vit_femto", "vit_pico", "vit_nano")
# At the zoo's fixed pre-training budget (500 steps x 128 images) m=32000 transfers worse than
# m=4000 (each image seen twice: compute-bound); docs/zoo-and-demo.md has the numbers.
SOURCE_M = (0, 250, 1000, 4000)
LORA_STEPS = 150  # the LoRA sweep's fixed step budget (the demo's time goal; see README)
# LoRA costs a forward and backward through the last block at every step (compute-bound on a CPU),
# so to fit the 3-minute budget its curves take every other n of the demo's grid (still geometric).
LORA_N = (10, 40, 160, 640)
# LoRA's lr is chosen per point on validation (tune=grid) among these two: at 150 steps LoRA's
# default 1e-3 leaves the new head under-trained (docs/zoo-and-demo.md).
LORA_LRS = (3e-3, 1e-2)
#: the analysis' questions: n* for these errors, and each curve against the smallest model's
TARGET_ERRORS = "0.3,0.15"
#: the from-scratch curves of --transfer (full fine-tuning of a random-init backbone)
SCRATCH_N = (40, 160, 640)
SCRATCH_STEPS = 300
SMALL_N = 100  # "small n": the demo's claims are checked at n <= 100
#: where the demo's offline W&B runs are, under its root: the curve jobs', then the aggregate's
OFFLINE_RUN_GLOBS = ("*/*/wandb/offline-run-*", "analysis/wandb/offline-run-*")
GROUP_KEY = "logger.wandb.group"
#: the demo's timing and provenance, in its root (the source of the docs' demo figures)
TIMING_FILE = "demo.json"
#: ``--help``: plain text, kept as written
HELP_DESCRIPTION = """\
The demo behind make demo: caulk's zoo backbones of three sizes (pre-trained on the
generated glyph source, built on first use and cached) x {linear, lora} x n x seeds
on digits, an m sweep (m=0 is random init), then caulk.analyze into one HTML report.

It runs three caulk.train multiruns of experiment=demo in this process, prints one
progress line per job and per curve point (a live bar on a terminal; each sweep's
own output goes to <out>/<sweep>.log), then what the report shows: whether the
pre-trained backbones beat the random ones at small n, and how the error moves
with the source size m."""
HELP_EPILOG = """\
examples:
  python -m caulk.demo
  python -m caulk.demo --models vit_pico --no-lora 'curve.seeds=[0]'
  python -m caulk.demo --source-m 0,1000 --out logs/my_demo"""


def demo_sweeps(
    models: list[str],
    source_m: list[int],
    m_sweep_model: str,
    lora: bool,
    lora_steps: int = LORA_STEPS,
    transfer: bool = False,
) -> dict[str, list[str]]:
    """The demo's multiruns, as ``caulk.train -m`` override lists keyed by sweep name;
    ``transfer`` adds the from-scratch curves the effective data transferred is measured against."""
    top = max(source_m)
    sweeps = {
        "linear": [f"model={','.join(models)}", "peft=linear", f"model.source_m=0,{top}"],
    }
    if lora:
        sweeps["lora"] = [
            f"model={','.join(models)}",
            "peft=lora",
            "peft.last_k_blocks=1",
            f"model.source_m={top}",
            "budget.mode=fixed",
            f"trainer.max_steps={lora_steps}",
            f"tune.grid={{peft.lr:[{','.join(map(str, LORA_LRS))}]}}",
            f"curve.n=[{','.join(map(str, LORA_N))}]",
        ]
    middle = [m for m in source_m if m not in (0, top)]
    if middle:
        sweeps["source_m"] = [
            f"model={m_sweep_model}",
            "peft=linear",
            f"model.source_m={','.join(map(str, middle))}",
        ]
    if transfer:
        sweeps["scratch"] = [
            f"model={','.join(models)}",
            "peft=full",
            "model.weights=none",
            "budget.mode=fixed",
            f"trainer.max_steps={SCRATCH_STEPS}",
            f"curve.n=[{','.join(map(str, SCRATCH_N))}]",
        ]
    return sweeps


def sweep_overrides(overrides: list[str], extra: list[str]) -> list[str]:
    """The Hydra overrides of one demo sweep (before its output dir): the demo experiment, the
    sweep's own overrides, then the user's extra ones."""
    return ["experiment=demo", *overrides, *extra]


def demo_group(root: Path, extra: list[str]) -> str:
    """The one W&B group of all the demo's runs and its aggregate: the user's
    ``logger.wandb.group=...`` override (the last one) if given, else the demo dir's name."""
    given = [o.split("=", 1)[1] for o in extra if o.lstrip("+").split("=", 1)[0] == GROUP_KEY]
    return given[-1].strip("'\"") if given else root.resolve().name


def group_override(group: str) -> str:
    """The override that puts a job into W&B group ``group`` (quoted: any name is one value)."""
    escaped = group.replace("'", "\\'")
    return f"++{GROUP_KEY}='{escaped}'"


def sync_hint(root: Path) -> str | None:
    """The command that uploads the demo's offline W&B runs, as absolute globs (it works from any
    dir); None when there are none."""
    base = shlex.quote(str(root.resolve()))
    globs = [f"{base}/{g}" for g in OFFLINE_RUN_GLOBS if any(root.glob(g))]
    return " ".join(["wandb sync", *globs]) if globs else None


def _sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """Every job's overrides of a multirun: the sweeps (``a=1,2``) expanded, one value each."""
    choices = []
    for override in OverridesParser.create().parse_overrides(overrides):
        if not override.is_sweep_override():
            choices.append([override.input_line])
            continue
        try:
            values = list(override.sweep_string_iterator())
        except HydraException:  # glob(): needs the config loader; Hydra checks it when it runs
            continue
        choices.append([f"{override.get_key_element()}={v}" for v in values])
    return [list(job) for job in itertools.product(*choices)]


def check_demo_overrides(sweeps: dict[str, list[str]], extra: list[str]) -> list[DictConfig]:
    """Compose every job of every demo sweep with the ``extra`` overrides and validate its config
    (``caulk.plan.validate_config``, and ``data.n``), so a misspelt key or a bad value fails in
    one line (CaulkConfigError) before any sweep runs. Returns the jobs' configs."""
    check_group_overrides(extra)
    configs = []
    try:
        jobs = [job for o in sweeps.values() for job in _sweep_jobs(sweep_overrides(o, extra))]
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            for job in jobs:
                cfg = compose(config_name="train", overrides=job)
                validate_config(cfg)
                _check_data_n(cfg.data.get("n"))
                configs.append(cfg)
    except (HydraException, OmegaConfBaseException) as e:
        raise CaulkConfigError(f"bad override: {one_line(e)}") from None
    return configs


def zoo_jobs(configs: list[DictConfig]) -> list[ZooJob]:
    """The zoo entries the demo's jobs load (``model.weights=zoo``)."""
    return [job for job in map(ZooJob.from_config, configs) if job is not None]


def prebuild_zoo(jobs: list[ZooJob], root: Path) -> float:
    """Pre-train the missing zoo entries of ``jobs`` before the sweeps, in parallel worker
    processes (``caulk.zoo.parallel``; their output goes to ``root/zoo.log``). Returns seconds."""
    start = time.perf_counter()
    todo = missing(jobs)
    if not todo:
        return 0.0
    workers = min(len(todo), usable_cpus())
    print(
        f"[demo] zoo: pre-training {len(todo)} missing entries, {workers} at a time "
        f"(log: {root / 'zoo.log'})",
        flush=True,
    )

    def report(meta: dict) -> None:
        print(
            f"[demo]   {meta['arch']} m={meta['source_m']}: {meta['seconds']:.0f} s "
            f"({meta['torch_threads']} thread(s), source accuracy {meta['source_accuracy']:.3f})",
            flush=True,
        )

    build_parallel(todo, workers, root / "zoo.log", on_built=report)
    return time.perf_counter() - start


def _check_data_n(n: object) -> None:
    """``data.n`` (the demo's curves set each point's own) must still be a size or null."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise CaulkConfigError(f"data.n must be a positive integer or null, got {n!r}")


def run_sweep(name: str, overrides: list[str], root: Path, extra: list[str]) -> float:
    """Run one ``caulk.train -m`` multirun into ``root/name``, in this process (one set of imports
    for the whole demo); its output goes to ``root/name.log``. Returns seconds."""
    argv = [
        "caulk.train",
        "-m",
        *sweep_overrides(overrides, extra),
        f"hydra.sweep.dir={root / name}",
        "hydra.callbacks.analyze.enabled=false",
    ]
    start = time.perf_counter()
    log_path = root / f"{name}.log"
    saved_argv, code = sys.argv, 0
    console = sys.stderr  # progress reaches the console; the sweep's own output goes to its log
    with open(log_path, "w") as log, progress_to(console), _all_output_to(log):
        sys.argv = argv
        try:
            hydra_main()
            code = 2 if take_rejected() else 0  # a job rejected for bad input
        except SystemExit as e:  # Hydra reports a failed job and exits
            code = e.code if isinstance(e.code, int) else 1
        except Exception:
            traceback.print_exc()
            code = 1
        finally:
            sys.argv = saved_argv
    if code != 0:
        tail = "\n".join(log_path.read_text().splitlines()[-15:])
        raise RuntimeError(f"demo sweep {name!r} failed (exit {code}); see {log_path}\n{tail}")
    return time.perf_counter() - start


def run_sweeps(
    sweeps: dict[str, list[str]], root: Path, extra: list[str], group: str
) -> dict[str, float]:
    """Run the demo's sweeps one after another (``run_sweep``), all in W&B group ``group``;
    returns each one's seconds."""
    seconds = {}
    for name, overrides in sweeps.items():
        print(
            f"[demo] sweep {name}: caulk.train -m experiment=demo {' '.join(overrides)}", flush=True
        )
        took = run_sweep(name, [*overrides, group_override(group)], root, extra)
        seconds[name] = round(took, 1)
        print(f"[demo]   done in {took:.0f} s (log: {root / name}.log)", flush=True)
    return seconds


def _stream_handlers():
    for logger in [logging.getLogger(), *logging.root.manager.loggerDict.values()]:
        for handler in list(getattr(logger, "handlers", [])):
            if isinstance(handler, logging.StreamHandler):
                yield logger, handler


@contextmanager
def _all_output_to(log):
    """Send prints and every console log handler (Lightning's, bound at import) to ``log``; then
    restore them and drop the handlers Hydra's job logging bound to ``log`` meanwhile."""
    consoles = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    moved = []
    for _, handler in _stream_handlers():
        if handler.stream in consoles:
            with suppress(AttributeError):  # a handler whose stream is fixed (last resort)
                moved.append((handler, handler.setStream(log)))
    try:
        with redirect_stdout(log), redirect_stderr(log):
            yield
    finally:
        for handler, stream in moved:
            handler.setStream(stream)
        for logger, handler in _stream_handlers():
            if handler.stream is log:
                logger.removeHandler(handler)


def small_n_comparison(table: pd.DataFrame, small_n: int = SMALL_N) -> pd.DataFrame:
    """Mean test error over n <= small_n and seeds, per (model, peft, source_m)."""
    ok = table[(table["status"] == "ok") & (table["n"] <= small_n)].copy()
    ok["source_m"] = pd.to_numeric(ok["source_m"], errors="coerce")
    ok = ok.dropna(subset=["source_m"])
    out = ok.groupby(["model", "peft", "source_m"])["test_error"].agg(["mean", "count"])
    return out.reset_index()


def format_findings(table: pd.DataFrame, small_n: int = SMALL_N) -> list[str]:
    """The two claims of the demo, measured: pretrained vs random at small n, and error vs m."""
    cmp = small_n_comparison(table, small_n)
    lines = [f"mean test error over n <= {small_n} and seeds (linear probe):"]
    linear = cmp[cmp["peft"] == "linear"]
    for model, sub in linear.groupby("model", sort=False):
        sub = sub.sort_values("source_m")
        errs = ", ".join(
            f"m={int(m)}: {e:.3f}" for m, e in zip(sub["source_m"], sub["mean"], strict=True)
        )
        verdict = ""
        if 0 in set(sub["source_m"]) and len(sub) > 1:
            random_err = float(sub.loc[sub["source_m"] == 0, "mean"].iloc[0])
            best_pre = float(sub.loc[sub["source_m"] > 0, "mean"].min())
            verdict = (
                "  -> pre-trained beats random init"
                if best_pre < random_err
                else "  -> pre-trained does NOT beat random init"
            )
        if len(sub) > 2:
            falls = bool((sub["mean"].diff().dropna() < 0).all())
            verdict += (
                "; error falls as m grows" if falls else "; error does NOT fall monotonically in m"
            )
        lines.append(f"  {model:10s} {errs}{verdict}")
    return lines


class _OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, ``caulk: error: ...`` (exit 2)."""

    def error(self, message: str) -> NoReturn:
        """Print ``caulk: error: <message>`` and exit 2."""
        self.exit(2, f"caulk: error: {message}\n")


def _attach_values(argv: list[str], flags: tuple[str, ...] = ("--source-m",)) -> list[str]:
    """``--source-m -1,0`` as ``--source-m=-1,0``: argparse takes a value that starts with "-" (and
    is no plain negative number) for a flag."""
    joined, args = [], iter(argv)
    for arg in args:
        value = next(args, None) if arg in flags else None
        joined.append(arg if value is None else f"{arg}={value}")
    return joined


def parse_source_m(text: str) -> list[int]:
    """The sorted distinct sizes of ``--source-m`` (at least two, each >= 0)."""
    try:
        sizes = sorted({int(m) for m in text.split(",") if m.strip()})
    except ValueError:
        raise CaulkConfigError(
            f"--source-m must be comma-separated integers m >= 0, got {text!r}"
        ) from None
    if len(sizes) < 2 or sizes[0] < 0:
        raise CaulkConfigError(
            f"--source-m needs two source sizes m >= 0 (e.g. --source-m 0,32000), got {text!r}"
        )
    return sizes


def zoo_dir(extra: list[str]) -> Path:
    """The zoo the demo's sweeps use: ``paths.zoo_dir=`` among the overrides, else the default
    (``$CAULK_CACHE/zoo``, ``~/.cache/caulk/zoo``)."""
    given = [o.split("=", 1)[1] for o in extra if o.startswith("paths.zoo_dir=")]
    cache = Path(os.environ.get("CAULK_CACHE", Path.home() / ".cache" / "caulk"))
    return Path(given[-1]) if given else cache / "zoo"


def zoo_entries(zoo: Path) -> int:
    """How many pre-trained entries the zoo holds (0: the demo pre-trains every one it needs)."""
    return len(list(zoo.glob("*.safetensors"))) if zoo.is_dir() else 0


#: what demo.json keeps of each zoo entry (its metadata file's fields)
ZOO_FIELDS = ("arch", "source_m", "num_params", "source_accuracy", "wall_time_s", "torch_threads")


def zoo_summary(zoo: Path) -> list[dict]:
    """Each zoo entry's architecture, m, size, source accuracy and pre-training seconds."""
    metas = (json.loads(p.read_text()) for p in sorted(zoo.glob("*.json"))) if zoo.is_dir() else ()
    return [{k: m.get(k) for k in ZOO_FIELDS} for m in metas]


def demo_root(out: str | None) -> Path:
    """The demo's dir: ``out``, else ``$CAULK_ROOT/logs/demo/<time>``; CaulkConfigError (one line,
    nothing created) unless a dir can be made there."""
    if out:
        root = Path(out)
    else:
        stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        root = Path(os.environ.get("CAULK_ROOT", ".")) / "logs" / "demo" / stamp
    check_writable(root, "--out")
    return root


def main(argv: list[str] | None = None) -> int:
    """``python -m caulk.demo [--models ...] [--source-m ...] [--out DIR] [overrides...]``."""
    p = _OneLineParser(
        prog="python -m caulk.demo",
        description=HELP_DESCRIPTION,
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--models", default=",".join(MODELS), help="zoo model configs (sizes)")
    p.add_argument(
        "--source-m",
        default=",".join(map(str, SOURCE_M)),
        help="source sizes m of the m sweep (0 = random init; the largest is used for the sizes)",
    )
    p.add_argument("--m-sweep-model", default="vit_pico", help="the model of the m sweep")
    p.add_argument("--no-lora", action="store_true", help="linear probes only")
    p.add_argument(
        "--lora-steps", type=int, default=LORA_STEPS, help="trainer.max_steps of the LoRA sweep"
    )
    p.add_argument(
        "--transfer",
        action="store_true",
        help="also train from-scratch curves (full fine-tuning, random init) and report the "
        "effective data transferred",
    )
    p.add_argument("--out", default=None, help="demo dir (default logs/demo/<time>)")
    p.add_argument("overrides", nargs="*", help="extra caulk.train overrides, e.g. curve.seeds=[0]")
    args = p.parse_args(_attach_values(sys.argv[1:] if argv is None else argv))
    try:
        models = [m for m in args.models.split(",") if m]
        source_m = parse_source_m(args.source_m)
        if args.lora_steps < 1:
            raise CaulkConfigError(f"--lora-steps must be >= 1, got {args.lora_steps}")
        if not models:
            raise CaulkConfigError("--models needs at least one model, e.g. --models vit_pico")
        check_group_overrides([f"model={m}" for m in [*models, args.m_sweep_model]])
        sweeps = demo_sweeps(
            models, source_m, args.m_sweep_model, not args.no_lora, args.lora_steps, args.transfer
        )
        questions = Questions.parse(TARGET_ERRORS, f"model={models[0]}")
        zoo_needed = zoo_jobs(check_demo_overrides(sweeps, args.overrides))
        root = demo_root(args.out)
    except CaulkConfigError as e:
        print(f"caulk: error: {e}", file=sys.stderr)
        return 2
    root.mkdir(parents=True, exist_ok=True)
    start, zoo = time.perf_counter(), zoo_dir(args.overrides)
    timing = {"zoo_entries_before": zoo_entries(zoo)}
    timing["zoo_build_s"] = round(prebuild_zoo(zoo_needed, root), 1)
    group = demo_group(root, args.overrides)
    timing["sweeps_s"] = run_sweeps(sweeps, root, args.overrides, group)
    analysis_start = time.perf_counter()
    result = analyze(
        [root],
        out=root / "analysis",
        wandb_mode="offline",
        wandb_group=group,
        questions=questions,
    )
    timing["analysis_s"] = round(time.perf_counter() - analysis_start, 1)
    print(format_analysis(result), flush=True)
    for line in format_findings(result.table):
        print(f"[demo] {line}", flush=True)
    hint = sync_hint(root)
    if hint:
        print(f"[demo] W&B runs (group {group}) logged offline; upload them with: {hint}")
    timing.update(total_s=round(time.perf_counter() - start, 1), zoo_entries_after=zoo_entries(zoo))
    timing["zoo"] = zoo_summary(zoo)
    command = ["python", "-m", "caulk.demo", *(sys.argv[1:] if argv is None else argv)]
    write_json_atomic(root / TIMING_FILE, {**provenance(command), **timing})
    print(
        f"[demo] total {timing['total_s']:.0f} s; report: {root / 'analysis' / 'report.html'}; "
        f"timing: {root / TIMING_FILE}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
