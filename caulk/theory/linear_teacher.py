"""Fine-tuning linear regression with linear teachers (Shachaf, Brutzkus & Globerson, 2021).

Construction, per seed and point n: Σ = diag(λ) (``covariance``), a target w_T and a source
w_S = w_T − Δ with ‖Δ‖ = ``delta_norm`` (``source`` picks Δ's direction), ``trials`` draws of
X (n × d, rows ~ N(0, Σ)) and y = X w_T + σ ε. The model starts at w_S and is fine-tuned on
(X, y) by full-batch gradient descent until its gradient vanishes (``depth=1``), or by GD on
the factors of a depth-L linear network from a balanced factorisation of w_S (``depth≥2``).
Each point's record holds the mean population excess risk (w − w_T)ᵀ Σ (w − w_T) over the
trials, its standard error and, where one exists, the exact expectation (Σ = I, depth 1).

What it shows: the GD limit is w_S + X⁺(y − X w_S) (checked in every record), E[R] matches
(1 − n/d)‖Δ‖² + σ² n/(d − n − 1) for Σ = I, sources at equal ‖Δ‖ differ in sample complexity
as :func:`caulk.theory.teachers.similarity` predicts when Σ is anisotropic, and depth ≥ 2
favours sources that differ from the target mostly by a rescaling. What it does not show:
anything beyond Gaussian inputs and linear teachers, finite-width non-linear networks, or
SGD/early stopping (the runs go to convergence); the anisotropic ``theory_asymptotic`` is a
large-d approximation, not an exact finite-d expectation.

``python -m caulk.theory.linear_teacher covariance=spiked source=top n=[5,10,20,40]``
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig
from scipy import stats

from caulk.cli import CONFIG_DIR, run_cli
from caulk.errors import CaulkConfigError
from caulk.theory import solvers, teachers
from caulk.theory.entry import (
    as_choice,
    as_float,
    as_int,
    as_int_list,
    common_fields,
    hydra_job,
    point_record,
    write_point,
)

SOLVERS = ("gd", "closed_form")
CURVE_KEYS = [
    "d",
    "sigma",
    "covariance",
    "source",
    "delta_norm",
    "depth",
    "solver",
    "spikes",
    "spike_scale",
    "power",
    "source_k",
]


@dataclass(frozen=True)
class TeacherSpec:
    """A validated linear-teacher configuration (everything but n)."""

    seed: int
    d: int
    ns: list[int]
    sigma: float
    trials: int
    covariance: str
    spikes: int
    spike_scale: float
    power: float
    source: str
    source_k: int
    delta_norm: float
    target_norm: float
    depth: int
    solver: str
    gd_tol: float
    gd_max_steps: int
    gd_lr: float


def validate(cfg: DictConfig) -> TeacherSpec:
    """Check the whole config before any work; CaulkConfigError with one line otherwise."""
    d = as_int(cfg, "d", low=2)
    spec = TeacherSpec(
        seed=as_int(cfg, "seed"),
        d=d,
        ns=as_int_list(cfg, "n", low=1),
        sigma=as_float(cfg, "sigma"),
        trials=as_int(cfg, "trials", low=2),
        covariance=as_choice(cfg, "covariance", teachers.COVARIANCES),
        # spikes and source_k are bounded by d only where they are used (source_k defaults to
        # spikes, so an unused default must not reject a small d)
        spikes=as_int(
            cfg, "spikes", low=1, high=d - 1 if cfg.get("covariance") == "spiked" else None
        ),
        spike_scale=as_float(cfg, "spike_scale", strict=True),
        power=as_float(cfg, "power", strict=True),
        source=as_choice(cfg, "source", teachers.SOURCES),
        source_k=as_int(
            cfg, "source_k", low=1, high=d - 1 if cfg.get("source") in ("top", "tail") else None
        ),
        delta_norm=as_float(cfg, "delta_norm"),
        target_norm=as_float(cfg, "target_norm", strict=True),
        depth=as_int(cfg, "depth", low=1),
        solver=as_choice(cfg, "solver", SOLVERS),
        gd_tol=as_float(cfg.gd, "tol", strict=True),
        gd_max_steps=as_int(cfg.gd, "max_steps", low=1),
        gd_lr=as_float(cfg.gd, "lr", strict=True),
    )
    if spec.solver == "closed_form" and spec.depth != 1:
        raise CaulkConfigError("solver=closed_form exists only for depth=1; use solver=gd")
    if spec.source == "parallel" and spec.delta_norm >= spec.target_norm:
        raise CaulkConfigError(
            f"source=parallel needs delta_norm < target_norm (the source is the target scaled by "
            f"1 − delta_norm/target_norm), got {spec.delta_norm} ≥ {spec.target_norm}"
        )
    return spec


def _finetune(spec: TeacherSpec, X: np.ndarray, y: np.ndarray, w_s: np.ndarray) -> dict[str, Any]:
    """Fine-tuned weights (trials, d) plus solver diagnostics."""
    if spec.solver == "closed_form":
        return {"w": solvers.closed_form_finetune(X, y, w_s)}
    if spec.depth == 1:
        res = solvers.gd_finetune(X, y, w_s, tol=spec.gd_tol, max_steps=spec.gd_max_steps)
        gap = np.abs(res.w - solvers.closed_form_finetune(X, y, w_s)).max()
        extra = {"gd_closed_form_max_abs_diff": float(gap), "gd_final_grad_norm": res.grad_norm}
    else:
        res = solvers.deep_gd_finetune(
            X, y, w_s, spec.depth, lr=spec.gd_lr, tol=spec.gd_tol, max_steps=spec.gd_max_steps
        )
        extra = {"gd_final_residual_rms": res.grad_norm}
    return {"w": res.w, "gd_steps": res.steps, "gd_converged": res.converged, **extra}


def simulate_point(
    spec: TeacherSpec, n: int, lam: np.ndarray, w_t: np.ndarray, w_s: np.ndarray
) -> dict[str, Any]:
    """Draw ``trials`` data sets of size n, fine-tune from w_S, summarise the excess risk."""
    rng = np.random.default_rng([spec.seed, 1, n])
    X = rng.standard_normal((spec.trials, n, spec.d)) * np.sqrt(lam)
    y = X @ w_t + spec.sigma * rng.standard_normal((spec.trials, n))
    fit = _finetune(spec, X, y, np.repeat(w_s[None], spec.trials, axis=0))
    risks = teachers.excess_risk(fit.pop("w"), w_t, lam)
    delta = w_t - w_s
    delta_sq = float(delta @ delta)
    point: dict[str, Any] = {
        "excess_risk": float(risks.mean()),
        "excess_risk_se": float(risks.std(ddof=1) / np.sqrt(spec.trials)),
        "excess_risk_median": float(np.median(risks)),
        "theory": None,
        "theory_kind": None,
        "theory_asymptotic": None,
        "similarity": None,
        "delta_sq": delta_sq,
        "source_risk": float(teachers.excess_risk(w_s, w_t, lam)),
        **fit,
    }
    if spec.depth == 1 and spec.covariance == "isotropic":
        point["theory"] = teachers.isotropic_expected_risk(n, spec.d, delta_sq, spec.sigma)
        point["theory_kind"] = None if point["theory"] is None else "exact"
        if spec.sigma == 0 and n < spec.d and delta_sq > 0:
            law = teachers.isotropic_risk_law(n, spec.d)
            point["beta_law_ks_pvalue"] = float(stats.kstest(risks / delta_sq, law.cdf).pvalue)
    point["interpolation_note"] = interpolation_note(n, spec.d, spec.sigma)
    if n < spec.d:
        point["similarity"] = teachers.similarity(delta, lam, n)
        if spec.depth == 1:
            point["theory_asymptotic"] = teachers.deterministic_equivalent_risk(
                delta, lam, n, spec.sigma
            )
    return point


def interpolation_note(n: int, d: int, sigma: float) -> str | None:
    """Why a noisy point this close to the interpolation threshold n = d has no usable mean risk
    (None when it has one). With label noise, the noise term of E[R], σ² n/(d − n − 1) below d and
    σ² d/(n − d − 1) above it, is infinite for |n − d| ≤ 1; the risk's variance is infinite for
    |n − d| ≤ 3 (inverse-Wishart moments), so there the mean over trials and its ± mislead."""
    if sigma <= 0 or abs(n - d) > 3:
        return None
    if abs(n - d) <= 1:
        return (
            f"n={n} is within 1 of d={d} (the interpolation threshold): with noise the expected "
            "excess risk is infinite, so the mean over trials estimates nothing"
        )
    return (
        f"n={n} is within 3 of d={d} (the interpolation threshold): with noise the excess risk "
        "has infinite variance, so the mean over trials and its ± are unreliable"
    )


def run(cfg: DictConfig) -> list[dict[str, Any]]:
    """Simulate every n of ``cfg.n``; write ``n<n>/record.json`` under the output dir; return them."""
    spec = validate(cfg)
    output_dir = Path(cfg.paths.output_dir)
    lam = teachers.covariance_spectrum(
        spec.covariance, spec.d, spikes=spec.spikes, spike_scale=spec.spike_scale, power=spec.power
    )
    w_t, w_s = teachers.make_teachers(
        spec.d,
        spec.source,
        spec.delta_norm,
        np.random.default_rng([spec.seed, 0]),
        target_norm=spec.target_norm,
        source_k=spec.source_k,
    )
    if spec.depth >= 2 and np.linalg.norm(w_s) < 1e-12:
        raise CaulkConfigError("depth ≥ 2 needs a non-zero source w_S (delta_norm = target_norm?)")
    base = common_fields(cfg, "linear_teacher", {k: getattr(spec, k) for k in CURVE_KEYS})
    records = []
    for n in spec.ns:
        start = time.perf_counter()
        point = simulate_point(spec, n, lam, w_t, w_s)
        converged = point.get("gd_converged", True)
        record = point_record(
            base,
            n,
            spec.seed,
            {"trials": spec.trials, "target_norm": spec.target_norm},
            point,
            start,
            status="ok" if converged else "not_converged",
            message=""
            if converged
            else f"gradient descent not converged after {spec.gd_max_steps} steps",
        )
        write_point(output_dir, {"n": n}, record)
        records.append(record)
    return records


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="theory/linear_teacher")
def hydra_main(cfg: DictConfig) -> None:
    """One Hydra job of ``python -m caulk.theory.linear_teacher``."""
    hydra_job(run, cfg)


def main() -> None:
    """``python -m caulk.theory.linear_teacher [overrides]`` (``-m`` for sweeps): one-line errors for bad
    overrides, and a sweep's bad jobs rejected without stopping the others (exit 2 at the end)."""
    run_cli(hydra_main, config_name="theory/linear_teacher")


if __name__ == "__main__":
    main()
