"""Pre-training several zoo entries at once, in worker processes that share the CPUs.

A small ViT's training step gains little from a second thread (on the 2-core machine of
docs/performance.md, ViT-Pico's step takes about as long with one thread as with two), while two
one-thread processes each run at full speed. So k worker processes with a 1/k share of the
threads each (``caulk.threads.configure``) build a set of entries in a fraction of the time one
process takes; ``benchmarks/zoo_build.py`` measures the ratio. The demo pre-builds the entries
its sweeps need this way.

Workers build through :func:`caulk.zoo.store.ensure_entry`: an existing entry is not rebuilt and
one that another process is building is waited for. Entries go costliest first (steps x
parameters), so the longest build does not start last. Each entry's metadata records the thread
count it was built with (CPU weights are bit-identical for a given count, not across counts).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from omegaconf import DictConfig, OmegaConf

from caulk import threads
from caulk.zoo import models  # noqa: F401  (registers caulk's timm architectures)
from caulk.zoo.build import build_zoo_entry, check_source_cfg
from caulk.zoo.store import ZooEntry, ensure_entry, entry_for


@dataclass(frozen=True)
class ZooJob:
    """One zoo entry to build: its model and source-task configs (plain data) and its zoo dir."""

    model: dict[str, Any]
    source: dict[str, Any]
    zoo_dir: str

    @classmethod
    def from_config(cls, cfg: DictConfig) -> ZooJob | None:
        """The zoo entry a composed ``caulk.train`` config loads; None unless ``weights=zoo``."""
        if cfg.model.get("weights") != "zoo":
            return None
        check_source_cfg(cfg.model, cfg.source_task)
        return cls(
            OmegaConf.to_container(cfg.model, resolve=True),
            OmegaConf.to_container(cfg.source_task, resolve=True),
            str(cfg.paths.zoo_dir),
        )

    @property
    def configs(self) -> tuple[DictConfig, DictConfig]:
        """(model config, source-task config) as the builder takes them."""
        return OmegaConf.create(self.model), OmegaConf.create(self.source)

    @property
    def entry(self) -> ZooEntry:
        """Where the entry lives (its name hashes the recipe)."""
        return entry_for(*self.configs, self.zoo_dir)

    def cost(self) -> int:
        """Relative pre-training cost: steps x parameters (0 for ``source_m=0``: no training)."""
        if int(self.model["source_m"]) == 0:
            return 0
        with torch.device("meta"):
            net = timm.create_model(self.model["arch"], **(self.model.get("kwargs") or {}))
        return int(self.source["steps"]) * sum(p.numel() for p in net.parameters())


def missing(jobs: Iterable[ZooJob]) -> list[ZooJob]:
    """The distinct entries of ``jobs`` not yet in their zoo, costliest first."""
    distinct = {job.entry: job for job in jobs}
    todo = [job for entry, job in distinct.items() if not entry.exists()]
    return sorted(todo, key=ZooJob.cost, reverse=True)


def build_parallel(
    jobs: Iterable[ZooJob],
    workers: int | None = None,
    log_path: str | Path | None = None,
    on_built: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Build the missing entries of ``jobs`` with ``workers`` processes (default: one per usable
    CPU, at most one per entry), each with its share of the threads; return their metadata.

    The workers' output (Lightning's and the builder's) goes to ``log_path`` (default: discarded);
    ``on_built(meta)`` is called in this process as each entry is done. The first failure is
    raised after the builds already running have finished; the ones not started are cancelled.
    """
    todo = missing(jobs)
    if not todo:
        return []
    workers = max(1, min(len(todo), workers or threads.usable_cpus()))
    log = str(log_path) if log_path else os.devnull
    built = []
    with ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),  # no fork of an OpenMP runtime in use
        initializer=_start_worker,
        initargs=(workers, log),
    ) as pool:
        pending = {pool.submit(_build, job) for job in todo}
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                if future.exception() is not None:
                    pool.shutdown(cancel_futures=True)
                    raise future.exception()
                built.append(future.result())
                if on_built:
                    on_built(built[-1])
    return built


def _start_worker(workers: int, log_path: str) -> None:
    """A worker's start: its output to ``log_path``, its share of the threads."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    threads.configure(processes=workers)


def _build(job: ZooJob) -> dict[str, Any]:
    """Build (or find) one entry in a worker (its progress lines go to the log); its metadata
    plus ``built`` and ``seconds``."""
    start = time.perf_counter()
    model_cfg, source_cfg = job.configs
    entry = job.entry
    meta, built = ensure_entry(entry, lambda: build_zoo_entry(model_cfg, source_cfg, entry))
    return {**meta, "built": built, "seconds": round(time.perf_counter() - start, 2)}
