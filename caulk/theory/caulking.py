"""A controlled caulking experiment (Fukuchi, Hataya & Matsui): better features, faster rates.

Construction. Inputs x ~ N(0, I_D). The target is a composition head ∘ adapter ∘ features:
f*(x) = h(a*(φ*(x))) with φ*(x) = U*ᵀx (U* ∈ R^{D×k}, orthonormal columns), the adapter
a*(z) = Σ_j sin(freq·z_j) (Lipschitz, smooth) and the head h the identity; y = f*(x) + σ ε.

Pre-training: T source tasks share φ*: y_src = Gᵀ φ*(x) + σ_src ε with a random G ∈ R^{k×T}.
From m source samples the feature extractor φ̂_m(x) = Ûᵀx takes Û = the top ``adapter_dim``
left singular vectors of the least-squares multi-task weights (D × T).

Downstream: only the adapter is fitted, on n target samples, by k-nearest-neighbour regression
on φ̂_m(x) with K = ⌈knn_scale · n^(2/(2+r))⌉ neighbours (r = ``adapter_dim``, the adapter's
input dimension: its complexity knob; K is the rate-optimal choice for Lipschitz functions of
r variables, error ~ n^(−2/(2+r))). The fixed-feature baseline (``m = 0``) skips pre-training:
the same learner works on the raw x (r = D), error ~ n^(−2/(2+D)).

What it shows: excess risk E(f̂ − f*)² vs n for several m; the observed rate (log-log slope over
the n grid, :func:`caulk.theory.rates.loglog_rate`) rises with m towards the r-dimensional rate
and stays above the baseline's D-dimensional rate, as the paper's bound n^(−rate) + o_m(1)
predicts. What it does not show: the improvement here comes from the m-dependent term (feature
misspecification ~ D/m shrinking), not from a change of the asymptotic exponent: fitted as
a + b·n^(−c), it is the floor a that falls with m. Nor does it show that real pre-training
produces caulkable features: φ* and the adapter class are built in, the head is fixed and known.

``python -m caulk.theory.caulking m=[0,20,200,2000,20000] n=[50,100,200,400,800,1600]``
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig
from scipy.spatial import cKDTree

from caulk.cli import CONFIG_DIR, run_cli
from caulk.errors import CaulkConfigError
from caulk.run.record import write_json_atomic
from caulk.theory.entry import (
    as_float,
    as_int,
    as_int_list,
    common_fields,
    hydra_job,
    point_record,
    write_point,
)
from caulk.theory.rates import loglog_rate, power_law_fit

RATES_NAME = "rates.json"


@dataclass(frozen=True)
class CaulkingSpec:
    """A validated caulking configuration (everything but m and n)."""

    seed: int
    D: int
    k: int
    ms: list[int]
    ns: list[int]
    adapter_dim: int
    tasks: int
    sigma: float
    sigma_src: float
    freq: float
    trials: int
    n_test: int
    knn_scale: float


def validate(cfg: DictConfig) -> CaulkingSpec:
    """Check the whole config before any work; CaulkConfigError with one line otherwise."""
    D = as_int(cfg, "D", low=2)
    k = as_int(cfg, "k", low=1, high=D - 1)
    tasks = as_int(cfg, "tasks", low=k)
    spec = CaulkingSpec(
        seed=as_int(cfg, "seed"),
        D=D,
        k=k,
        ms=as_int_list(cfg, "m", low=0),
        ns=as_int_list(cfg, "n", low=1),
        adapter_dim=as_int(cfg, "adapter_dim", low=1, high=min(D, tasks)),
        tasks=tasks,
        sigma=as_float(cfg, "sigma"),
        sigma_src=as_float(cfg, "sigma_src"),
        freq=as_float(cfg, "freq", strict=True),
        trials=as_int(cfg, "trials", low=2),
        n_test=as_int(cfg, "n_test", low=1),
        knn_scale=as_float(cfg, "knn_scale", strict=True),
    )
    if any(0 < m < spec.adapter_dim for m in spec.ms):
        raise CaulkConfigError(
            f"every m must be 0 (no pre-training) or ≥ adapter_dim={spec.adapter_dim}, got {spec.ms}"
        )
    return spec


def true_features(D: int, k: int, seed: int) -> np.ndarray:
    """U* (D × k, orthonormal columns): the feature directions shared by source and target."""
    q, _ = np.linalg.qr(np.random.default_rng([seed, 0]).standard_normal((D, k)))
    return q


def target_function(x: np.ndarray, u_star: np.ndarray, freq: float) -> np.ndarray:
    """f*(x) = h(a*(φ*(x))) with φ*(x) = U*ᵀx, a*(z) = Σ_j sin(freq·z_j), h = identity."""
    return np.sin(freq * (x @ u_star)).sum(axis=1)


def pretrain_features(
    spec: CaulkingSpec, m: int, u_star: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Û (D × adapter_dim) estimated from m samples of ``tasks`` linear source tasks on φ*."""
    x = rng.standard_normal((m, spec.D))
    heads = rng.standard_normal((spec.k, spec.tasks))
    y = x @ u_star @ heads + spec.sigma_src * rng.standard_normal((m, spec.tasks))
    weights = np.linalg.lstsq(x, y, rcond=None)[0]
    left, _, _ = np.linalg.svd(weights, full_matrices=False)
    return left[:, : spec.adapter_dim]


def knn_neighbours(spec: CaulkingSpec, n: int, dim: int) -> int:
    """K = ⌈knn_scale · n^(2/(2+dim))⌉, at most n: the rate-optimal K for Lipschitz targets."""
    return min(n, math.ceil(spec.knn_scale * n ** (2.0 / (2.0 + dim))))


def simulate_point(spec: CaulkingSpec, m: int, n: int, u_star: np.ndarray) -> dict[str, Any]:
    """Mean excess risk over ``trials`` (source sample, target sample) draws at (m, n)."""
    rng = np.random.default_rng([spec.seed, 1, m, n])
    dim = spec.D if m == 0 else spec.adapter_dim
    neighbours = knn_neighbours(spec, n, dim)
    risks = np.empty(spec.trials)
    angles = np.empty(spec.trials)
    for t in range(spec.trials):
        features = np.eye(spec.D) if m == 0 else pretrain_features(spec, m, u_star, rng)
        x = rng.standard_normal((n, spec.D))
        y = target_function(x, u_star, spec.freq) + spec.sigma * rng.standard_normal(n)
        x_test = rng.standard_normal((spec.n_test, spec.D))
        _, idx = cKDTree(x @ features).query(x_test @ features, k=neighbours)
        pred = y[idx.reshape(spec.n_test, -1)].mean(axis=1)
        risks[t] = np.mean((pred - target_function(x_test, u_star, spec.freq)) ** 2)
        # sin² of the largest principal angle between span(U*) and span(Û) (0: perfect features)
        overlap = np.linalg.svd(u_star.T @ features, compute_uv=False)
        angles[t] = 1.0 - min(1.0, float(overlap.min()) ** 2) if m else float("nan")
    return {
        "excess_risk": float(risks.mean()),
        "excess_risk_se": float(risks.std(ddof=1) / np.sqrt(spec.trials)),
        "knn_neighbours": neighbours,
        "feature_sin2_angle": None if m == 0 else float(angles.mean()),
        "reference_rate": 2.0 / (2.0 + dim),
    }


def fit_rates(records: list[dict[str, Any]]) -> dict[int, dict[str, float]]:
    """Per m: the log-log rate (≥ 2 points) and the a + b·n^(−c) fit (≥ 4 points) vs n."""
    out: dict[int, dict[str, float]] = {}
    for m in sorted({r["m"] for r in records}):
        curve = sorted((r["n"], r["excess_risk"]) for r in records if r["m"] == m)
        if len(curve) < 2:
            continue
        ns, errors = zip(*curve, strict=True)
        out[m] = {"loglog_rate": loglog_rate(ns, errors)}
        if len(curve) >= 4:
            out[m].update(power_law_fit(ns, errors))
    return out


def run(cfg: DictConfig) -> list[dict[str, Any]]:
    """Simulate every (m, n); write ``m<m>/n<n>/record.json`` and ``rates.json``; return records."""
    spec = validate(cfg)
    output_dir = Path(cfg.paths.output_dir)
    u_star = true_features(spec.D, spec.k, spec.seed)
    records = []
    for m in spec.ms:
        fields = {
            "m": m,
            "D": spec.D,
            "k": spec.k,
            "adapter_dim": spec.D if m == 0 else spec.adapter_dim,
            "features": "raw" if m == 0 else "pretrained",
            "sigma": spec.sigma,
            "sigma_src": spec.sigma_src,
            "tasks": spec.tasks,
            "freq": spec.freq,
        }
        base = common_fields(cfg, "caulking", fields)
        for n in spec.ns:
            start = time.perf_counter()
            extra = {"d": spec.D, "trials": spec.trials, "n_test": spec.n_test, "theory": None}
            point = simulate_point(spec, m, n, u_star)
            record = point_record(base, n, spec.seed, extra, point, start)
            write_point(output_dir, {"m": m, "n": n}, record)
            records.append(record)
    rates = {str(m): fit for m, fit in fit_rates(records).items()}
    write_json_atomic(output_dir / RATES_NAME, rates)
    return records


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="theory/caulking")
def hydra_main(cfg: DictConfig) -> None:
    """One Hydra job of ``python -m caulk.theory.caulking``."""
    hydra_job(run, cfg)
    rates_path = Path(cfg.paths.output_dir) / RATES_NAME
    if rates_path.exists():
        print(f"fitted rates (per m): {rates_path.read_text()}", flush=True)


def main() -> None:
    """``python -m caulk.theory.caulking [overrides]`` (``-m`` for sweeps): one-line errors for bad
    overrides, and a sweep's bad jobs rejected without stopping the others (exit 2 at the end)."""
    run_cli(hydra_main, config_name="theory/caulking")


if __name__ == "__main__":
    main()
