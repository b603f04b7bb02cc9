"""Benchmark: how long the analysis with its answers takes on a 200-record sweep.

    python benchmarks/analysis_speed.py [--curves 10] [--seeds 3] [--replicates 200] [--smoke]

Writes a planted sweep (``--curves`` curves x 7 n x ``--seeds`` seeds of record.json files:
10 x 7 x 3 = 210 records, a power law with a floor per curve plus seed noise), then times
``caulk.analyze.analyze`` on it with two target errors and a baseline: the tables, every curve's
averaged model with its bootstrap, the answers, the ratios, the figures and the report. The
adaptive sweep calls this after every round, so the goal is <= 10 s for 200 records on 2 cores.
Prints seconds in total and per record, the goal's PASS/FAIL and the JSON result line.
``--smoke``: 2 curves, 20 replicates.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's caulk

from common import parse_args, print_result  # noqa: E402

from caulk.analysis.options import Questions  # noqa: E402
from caulk.analysis.pipeline import analyze  # noqa: E402
from caulk.run.record import write_json_atomic  # noqa: E402

NS = (10, 20, 40, 80, 160, 320, 640)
GOAL_S = 10.0


def write_sweep(root: Path, curves: int, seeds: int, rng) -> int:
    """The planted sweep: curve i is model ``m<i>``, error 0.05 + (1 + i/4) n^-(0.3 + i/40)."""
    count = 0
    for i in range(curves):
        for n in NS:
            for seed in range(seeds):
                error = 0.05 + (1 + i / 4) * n ** -(0.3 + i / 40) + 0.01 * rng.normal()
                record = {
                    "model": f"m{i}",
                    "peft": "linear",
                    "data": "digits",
                    "n": n,
                    "seed": seed,
                    "status": "ok",
                    "test_error": float(error),
                }
                write_json_atomic(root / f"m{i}_n{n}_s{seed}" / "record.json", record)
                count += 1
    return count


def main() -> None:
    """Time the analysis of the planted sweep."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--curves", type=int, default=10)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--replicates", type=int, default=200)
    args = parse_args(p, {"curves": 2, "replicates": 20})
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp) / "sweep"
        records = write_sweep(sweep, args.curves, args.seeds, np.random.default_rng(0))
        questions = Questions.parse("0.3,0.2", "model=m0")
        start = time.perf_counter()
        result = analyze([sweep], replicates=args.replicates, questions=questions)
        seconds = time.perf_counter() - start
    per_record = seconds / records
    print(
        f"{records} records, {args.curves} curves: {seconds:.1f} s ({per_record * 1e3:.0f} ms per record)"
    )
    met = seconds <= GOAL_S * records / 200
    print(f"goal <= {GOAL_S:g} s per 200 records: {'PASS' if met else 'FAIL'}")
    print_result(
        {
            "benchmark": "analysis_speed",
            "records": records,
            "curves": args.curves,
            "replicates": args.replicates,
            "seconds": round(seconds, 2),
            "ms_per_record": round(per_record * 1e3, 1),
            "goal_met": met,
            "answers": len(result.answers) if result.answers is not None else 0,
        },
        args.smoke,
    )


if __name__ == "__main__":
    main()
