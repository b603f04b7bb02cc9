"""Linear teachers: input covariances, source/target weights, similarity and closed forms.

Everything lives in the eigenbasis of Σ (Σ = diag(λ), λ sorted decreasing); this loses no
generality for Gaussian inputs, since the problem is invariant under a rotation of x and w.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, stats

from caulk.errors import CaulkConfigError

COVARIANCES = ("isotropic", "spiked", "power_law")
SOURCES = ("random", "top", "tail", "parallel")


def covariance_spectrum(
    kind: str, d: int, spikes: int = 5, spike_scale: float = 50.0, power: float = 1.0
) -> np.ndarray:
    """Eigenvalues λ (decreasing, mean 1) of the input covariance Σ = diag(λ).

    ``isotropic``: λ = 1. ``spiked``: ``spikes`` eigenvalues ``spike_scale`` times the rest.
    ``power_law``: λ_i ∝ i^(-power). All are rescaled to trace(Σ) = d.
    """
    if kind == "isotropic":
        lam = np.ones(d)
    elif kind == "spiked":
        lam = np.ones(d)
        lam[:spikes] = spike_scale
    elif kind == "power_law":
        lam = np.arange(1, d + 1, dtype=float) ** (-power)
    else:
        raise CaulkConfigError(f"unknown covariance {kind!r}; available: {', '.join(COVARIANCES)}")
    return lam * (d / lam.sum())


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def make_teachers(
    d: int,
    source: str,
    delta_norm: float,
    rng: np.random.Generator,
    target_norm: float = 1.0,
    source_k: int = 5,
) -> tuple[np.ndarray, np.ndarray]:
    """Target weights w_T (uniform direction, norm ``target_norm``) and source w_S = w_T − Δ.

    ‖Δ‖ = ``delta_norm`` for every source kind; only Δ's direction differs:
    ``random`` uniform; ``top`` uniform in the span of Σ's top ``source_k`` eigenvectors;
    ``tail`` uniform in the span of the remaining d − ``source_k``; ``parallel`` along w_T,
    i.e. the source is the target rescaled by 1 − delta_norm/target_norm.
    """
    w_t = target_norm * _unit(rng.standard_normal(d))
    direction = rng.standard_normal(d)
    if source == "random":
        pass
    elif source == "top":
        direction[source_k:] = 0.0
    elif source == "tail":
        direction[:source_k] = 0.0
    elif source == "parallel":
        direction = w_t.copy()
    else:
        raise CaulkConfigError(f"unknown source {source!r}; available: {', '.join(SOURCES)}")
    delta = delta_norm * _unit(direction)
    return w_t, w_t - delta


def excess_risk(w: np.ndarray, w_t: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Population excess risk (w − w_T)ᵀ Σ (w − w_T); ``w`` may be a batch (…, d)."""
    e = w - w_t
    return np.einsum("...i,i,...i->...", e, lam, e)


def isotropic_expected_risk(n: int, d: int, delta_sq: float, sigma: float) -> float | None:
    """Exact E[R] of the GD limit from w_S for Σ = I (None where it is infinite/undefined).

    n < d: (1 − n/d)‖Δ‖² + σ² n/(d − n − 1) (the noise term needs n < d − 1);
    n > d + 1: the OLS risk σ² d/(n − d − 1) (bias 0, X has full column rank).
    """
    if n < d:
        bias = (1.0 - n / d) * delta_sq
        if sigma == 0:
            return bias
        return bias + sigma**2 * n / (d - n - 1) if n < d - 1 else None
    if sigma == 0:
        return 0.0
    return sigma**2 * d / (n - d - 1) if n > d + 1 else None


def isotropic_risk_law(n: int, d: int) -> stats.rv_continuous:
    """Law of R/‖Δ‖² for Σ = I, n < d, no noise: Beta((d − n)/2, n/2)."""
    return stats.beta((d - n) / 2.0, n / 2.0)


def effective_regularization(lam: np.ndarray, n: int) -> float:
    """κ > 0 with Σ_i λ_i/(λ_i + κ) = n (the implicit ridge of min-norm interpolation, n < d)."""
    if n >= len(lam):
        raise ValueError("effective_regularization needs n < d")

    def dof(k: float) -> float:
        return float(np.sum(lam / (lam + k))) - n

    hi = 1.0
    while dof(hi) > 0:
        hi *= 2.0
    return optimize.brentq(dof, 0.0, hi, xtol=1e-14, rtol=1e-12)  # dof(0) = d − n > 0


def similarity(delta: np.ndarray, lam: np.ndarray, n: int) -> float:
    """Task similarity that sets the fine-tuning risk: Σ_i λ_i Δ_i² (κ/(λ_i + κ))², n < d.

    Δ = w_T − w_S in Σ's eigenbasis, κ = :func:`effective_regularization`. Directions with
    λ_i ≫ κ (learned from n samples) count for nothing, those with λ_i ≪ κ count fully, so
    the measure involves w_S, w_T *and* Σ; for Σ = I it is (1 − n/d)² ‖Δ‖².
    """
    k = effective_regularization(lam, n)
    return float(np.sum(lam * delta**2 * (k / (lam + k)) ** 2))


def deterministic_equivalent_risk(
    delta: np.ndarray, lam: np.ndarray, n: int, sigma: float
) -> float:
    """High-dimensional (d, n → ∞) approximation of E[R] for the GD limit from w_S, n < d.

    bias = similarity / (1 − s), variance = σ² s/(1 − s), s = (1/n) Σ_i λ_i²/(λ_i + κ)²
    (Hastie, Montanari, Rosset, Tibshirani 2022; Bach 2024). Exact in the limit, not at finite d;
    for Σ = I it gives (1 − n/d)‖Δ‖² + σ² n/(d − n).
    """
    k = effective_regularization(lam, n)
    s = float(np.sum(lam**2 / (lam + k) ** 2)) / n
    return (similarity(delta, lam, n) + sigma**2 * s) / (1.0 - s)
