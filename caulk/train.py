"""Train one (model, peft, data, n, seed) point, or a curve of them, and write their records.

``train(cfg)`` / ``train_curve(cfg)`` do the work and return the records; ``hydra_main`` is the
``@hydra.main`` entry (``python -m caulk.train model=vit_b peft=lora``, ``-m`` for sweeps). The
data flows one way: config -> plan (``caulk.plan``) -> backbone, cache, strategy and engine per
point (``caulk.run``) -> records (``caulk.run.record``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import hydra
from omegaconf import DictConfig

from caulk.adaptive import is_adaptive, run_adaptive
from caulk.cli import CONFIG_DIR, announce_job, reject_job, run_cli
from caulk.cluster import is_global_zero
from caulk.console import quiet_console
from caulk.errors import CaulkConfigError
from caulk.plan import backbone_plans, is_curve, make_plan, validate_config
from caulk.run.curve import CurvePointsFailed, run_curve
from caulk.run.record import format_curve_summary, format_summary
from caulk.run.tuned import run_tuned
from caulk.threads import configure as configure_threads
from caulk.tune import is_tuned

log = logging.getLogger("caulk.train")
quiet_console()  # at import too: train() used as a library is as quiet as the command line


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit and test one point; write ``record.json`` into ``cfg.paths.output_dir`` and return it.

    Bad input raises CaulkConfigError before any training and writes no record. A failure
    during training writes a record with ``status="failed"`` and re-raises.
    """
    if is_curve(cfg):
        raise CaulkConfigError("curve.n/curve.seeds are set: use train_curve(cfg)")
    return train_curve(cfg)[0]


def train_curve(cfg: DictConfig) -> list[dict[str, Any]]:
    """Run every (n, seed) point of ``caulk.plan.curve_points(cfg)`` in this process.

    The backbone is built (and its weights loaded) once, or once per backbone when the points
    name several (``model.init_seed='${seed}'``); each point adapts a fresh copy. Single
    runs write ``<output_dir>/record.json``; curve runs write ``<output_dir>/n<n>_s<seed>/record.json``
    and log all points to one W&B run with n as x-axis. Every point is validated before any
    training. A failed point leaves a failed record, the others still run, and the job then raises.
    """
    if is_adaptive(cfg):  # caulk chooses the n: rounds of ordinary curves
        validate_config(cfg)
        return run_adaptive(cfg, train_curve)
    start = time.perf_counter()
    configure_threads()  # this process's share of the CPUs (caulk.threads)
    run = run_tuned if is_tuned(cfg) else run_curve
    records, failures = {}, []
    plan = make_plan(cfg)
    for part in backbone_plans(plan):  # one per backbone when model.init_seed follows the seed
        try:
            records.update(zip(map(id, part.points), run(part, start), strict=True))
        except CurvePointsFailed as e:  # the other backbones' points still run
            failures.append(e)
        start = time.perf_counter()
    if failures:
        raise failures[0]
    return [records[id(p)] for p in plan.points]


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def hydra_main(cfg: DictConfig) -> float | None:
    """The Hydra task: train the job's points, print their summary, return the mean test error."""
    quiet_console()  # again: hydra.verbose is known only now
    if is_global_zero():
        announce_job()
    try:
        records = train_curve(cfg)
    except CaulkConfigError as e:
        reject_job(e, cfg.paths.output_dir)
        return None
    if not is_global_zero():  # a DDP child: rank 0 reports
        pass
    elif len(records) == 1:
        print(format_summary(records[0]), flush=True)
    else:
        print(format_curve_summary(records), flush=True)
    return sum(r["test_error"] for r in records) / len(records)


def main() -> None:
    """``python -m caulk.train [overrides]``."""
    run_cli(hydra_main)


if __name__ == "__main__":
    main()
