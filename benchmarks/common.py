"""What the benchmarks share: the ``--smoke`` flag and the JSON line they end with.

``--smoke`` runs a benchmark's whole path (every arm of its comparison) at tiny sizes, in
seconds: ``tests/test_benchmarks.py`` runs each one so, so that no benchmark breaks unnoticed.
Its timings and ratio mean nothing; the result line then says ``"smoke": true``.
"""

from __future__ import annotations

import argparse
import json

from caulk.provenance import provenance
from caulk.threads import current as current_threads

#: the fixed-step recipe the timing benchmarks measure: ``trainer.max_steps`` steps at one lr
#: (not the default protocol's ridge probe, step budget and LoRA lr grid); ``++`` because only
#: the linear probe has a ``peft.solver``
FIXED_RECIPE = ["++peft.solver=sgd", "budget.mode=fixed", "tune=none"]


def parse_args(parser: argparse.ArgumentParser, smoke: dict) -> argparse.Namespace:
    """Add ``--smoke`` to ``parser`` and parse the command line; with ``--smoke`` the defaults
    become ``smoke`` (tiny sizes), flags given explicitly still win."""
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, seconds: checks the benchmark runs, its numbers mean nothing "
        f"(sets {' '.join(f'--{k}={v}' for k, v in smoke.items())})",
    )
    args = parser.parse_args()
    if args.smoke:
        parser.set_defaults(**smoke)
        args = parser.parse_args()
    return args


def stamped(result: dict) -> dict:
    """``result`` with this process's thread settings (``caulk.threads``, unless it has its own)
    and where and when it was measured (``caulk.provenance``: machine, commit, date, command)."""
    return {"threads": current_threads().fields(), "provenance": provenance(), **result}


def print_result(result: dict, smoke: bool) -> None:
    """Print the benchmark's result as one JSON line (the last of its output), with this
    process's thread settings and provenance (``stamped``)."""
    print(json.dumps({**stamped(result), "smoke": smoke}), flush=True)


def int_list(text: str) -> list[int]:
    """``"10,20,40"`` -> ``[10, 20, 40]`` (an argparse ``type``)."""
    return [int(x) for x in text.split(",") if x.strip()]
