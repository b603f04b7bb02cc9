"""Fine-tuning solvers for linear teachers, batched over independent trials.

Shapes: X (trials, n, d), y (trials, n), weights (trials, d). All float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class GDResult:
    """Weights reached by gradient descent, with its convergence diagnostics."""

    w: np.ndarray
    steps: int
    converged: bool
    grad_norm: float


def _apply(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """X w per trial: (trials, n, d) × (trials, d) -> (trials, n)."""
    return (X @ w[..., None])[..., 0]


def _apply_t(X: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Xᵀ r per trial: (trials, n, d) × (trials, n) -> (trials, d)."""
    return (r[:, None, :] @ X)[:, 0]


def _products_of_others(b: np.ndarray) -> np.ndarray:
    """For each k, the product of all b_j with j ≠ k (prefix × suffix products, no division)."""
    ones = np.ones_like(b[:, :1])
    prefix = np.cumprod(np.concatenate([ones, b[:, :-1]], axis=1), axis=1)
    suffix = np.cumprod(np.concatenate([ones, b[:, :0:-1]], axis=1), axis=1)[:, ::-1]
    return prefix * suffix


def closed_form_finetune(X: np.ndarray, y: np.ndarray, w_s: np.ndarray) -> np.ndarray:
    """The GD limit from w_S: w_S + X⁺(y − X w_S) (the least-squares solution closest to w_S).

    X⁺ is applied through normal equations (X has full rank almost surely for Gaussian rows):
    Xᵀ(XXᵀ)⁻¹ for n ≤ d, (XᵀX)⁻¹Xᵀ for n > d; much faster than batched SVDs.
    """
    residual = y - _apply(X, w_s)
    Xt = np.swapaxes(X, 1, 2)
    if X.shape[1] <= X.shape[2]:
        return w_s + _apply_t(X, np.linalg.solve(X @ Xt, residual[..., None])[..., 0])
    return w_s + np.linalg.solve(Xt @ X, _apply_t(X, residual)[..., None])[..., 0]


def gd_finetune(
    X: np.ndarray,
    y: np.ndarray,
    w_s: np.ndarray,
    tol: float = 1e-13,
    max_steps: int = 200_000,
) -> GDResult:
    """Full-batch gradient descent on (1/2n)‖Xw − y‖² from w_S, step 1/L per trial.

    L = ‖X‖₂²/n is the loss's smoothness constant. Stops when every trial's gradient norm is
    below ``tol`` (in units of the initial one, or absolute when that is below 1).
    """
    n = X.shape[1]
    step = n / np.linalg.norm(X, ord=2, axis=(1, 2)) ** 2
    w = w_s.copy()
    grad = _apply_t(X, _apply(X, w) - y) / n
    threshold = tol * np.maximum(1.0, np.linalg.norm(grad, axis=1))
    steps = 0
    while steps < max_steps:
        norms = np.linalg.norm(grad, axis=1)
        if np.all(norms <= threshold):
            break
        w -= step[:, None] * grad
        grad = _apply_t(X, _apply(X, w) - y) / n
        steps += 1
    norms = np.linalg.norm(grad, axis=1)
    return GDResult(w, steps, bool(np.all(norms <= threshold)), float(norms.max()))


def balanced_factors(w_s: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """A balanced depth-L factorisation w_S = a · b_2 ⋯ b_L with ‖a‖ = |b_k| = ‖w_S‖^(1/L).

    Returns a (trials, d) and b (trials, depth − 1).
    """
    norm = np.linalg.norm(w_s, axis=1, keepdims=True)
    scale = norm ** (1.0 / depth)
    return w_s / norm * scale, np.repeat(scale, depth - 1, axis=1)


def deep_gd_finetune(
    X: np.ndarray,
    y: np.ndarray,
    w_s: np.ndarray,
    depth: int,
    lr: float = 0.5,
    tol: float = 1e-10,
    max_steps: int = 200_000,
) -> GDResult:
    """Gradient descent on a depth-L linear network x ↦ xᵀa·b_2⋯b_L from a balanced w_S.

    The hidden width is 1: with a balanced rank-one source embedded in wider layers (extra
    hidden units at zero) every gradient stays in the embedded direction, so wider networks
    follow exactly these dynamics. The step is ``lr``/(L ‖w_S‖^(2−2/L) ‖X‖₂²/n), the scale of
    the end-to-end preconditioner; it stops when every trial's training residual RMS is
    below ``tol`` times its initial value (or absolute below 1); ``depth=1`` is plain GD.
    """
    n = X.shape[1]
    a, b = balanced_factors(w_s, depth)
    norm_s = np.linalg.norm(w_s, axis=1)
    smooth = np.linalg.norm(X, ord=2, axis=(1, 2)) ** 2 / n
    step = lr / (depth * norm_s ** (2.0 - 2.0 / depth) * smooth)

    def residual(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return _apply(X, a) * np.prod(b, axis=1, keepdims=True) - y

    r = residual(a, b)
    threshold = tol * np.maximum(1.0, np.sqrt(np.mean(r**2, axis=1)))
    steps = 0
    while steps < max_steps and not np.all(np.sqrt(np.mean(r**2, axis=1)) <= threshold):
        g_end = _apply_t(X, r) / n  # ∂loss/∂(end-to-end weights)
        grad_a = g_end * np.prod(b, axis=1, keepdims=True)
        grad_b = np.sum(a * g_end, axis=1, keepdims=True) * _products_of_others(b)
        a = a - step[:, None] * grad_a
        b = b - step[:, None] * grad_b
        r = residual(a, b)
        steps += 1
    rms = np.sqrt(np.mean(r**2, axis=1))
    w = a * np.prod(b, axis=1, keepdims=True)
    return GDResult(w, steps, bool(np.all(rms <= threshold)), float(rms.max()))
