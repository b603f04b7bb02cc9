"""Converged linear probes on cached whole-backbone features (the ``solver`` engine).

``peft.solver`` picks how a linear probe's head is fitted:

- ``sgd``: the fixed-step recipe of the other engines (``batched_heads``, ``cached``, Lightning);
- ``lbfgs``: full-batch multinomial logistic regression with an L2 penalty on the weights, run
  until the largest gradient component is at most ``peft.tol`` (scipy/scikit-learn's ``gtol``) or
  ``peft.max_iter`` iterations, for every λ of ``peft.lambdas``. All points of a curve are solved
  as one batched L-BFGS (each point its own curvature pairs, line search and stopping; points of
  equal n share one product, so no point pays for another's rows). ``peft.lambda_path``: ``warm``
  walks λ from strong to weak, each warm-started from the previous solution; ``parallel`` solves
  every (λ, point) at once from zero; ``auto`` is parallel on a GPU, warm on a CPU;
- ``ridge``: regularised least squares to ±1 one-vs-rest targets, all λ at once from one
  eigendecomposition per point (big_vision's few-shot evaluator).

What λ means: the objective is the MEAN training loss plus ``λ/2·||W||²`` (the bias is not
penalised). For ``lbfgs`` the loss is the cross-entropy, so λ is scikit-learn's
``LogisticRegression(C=1/(λ·n))``; for ``ridge`` it is ``½·||y - Wx - b||²``, so λ is
scikit-learn's ``Ridge(alpha=λ·n)``.

Features are standardised with the mean and (biased) variance of the point's own training rows,
``(x - mean) / sqrt(var + eps)`` with BatchNorm's ``eps`` (what ``head_norm``'s BatchNorm computes
at the end of training, without its running-average lag); the head stored for the point keeps
them as its BatchNorm's running statistics, so the saved adapter reproduces the reported errors.
With ``peft.head_norm=false`` the raw features are used.

Selection reads only the point's training and validation rows: the λ with the lowest validation
error; ties go to the larger λ (the simpler model). The test split is read once, afterwards, by
the selected head loaded into the point's module.

``tune.validation=within_n`` with ``ridge`` selects λ inside the n examples instead, by exact
leave-one-out (``ridge_loo``, from the same eigendecomposition as the heads): the λ with the
lowest LOO classification error, ties to the larger λ as above; no validation row enters the
choice (the point's validation error, when it has validation rows, is only reported). Where a
class has a single training example (n <= the number of classes), its LOO refit never sees that
class: the λ is then fixed, the middle of the grid (``fixed_lambda_index``), and the record says
why. A selected λ at either end of the grid is flagged (``selected.lambda_at_edge``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from caulk.cache.data import CachedFeatureDataModule
from caulk.cache.extract import CachedFeatures
from caulk.config import SOLVERS
from caulk.engines.base import CurveFit, Engine, PointJob, PointResult, fit_groups, outcome_fields
from caulk.engines.cached import finish_point, replay_logs
from caulk.engines.strategy import fast_loop_device
from caulk.errors import CaulkConfigError

#: the dtype the solvers compute in (the line search and the tolerance need float64)
DTYPE = torch.float64
#: L-BFGS memory (curvature pairs kept per point)
MEMORY = 10
#: Armijo sufficient-decrease constant and the most halvings of a step
ARMIJO, MAX_HALVINGS = 1e-4, 40
BN_EPS = nn.BatchNorm1d(1).eps
#: how the λ of a point is selected: on validation rows, or by leave-one-out inside n
HOLDOUT, LOO, FIXED = "holdout", "loo", "fixed"


def selection_policy(cfg: Any) -> str:
    """``loo`` for ``peft.solver=ridge`` under ``tune.validation=within_n``, else ``holdout``."""
    within = str((cfg.get("tune") or {}).get("validation", "holdout")) == "within_n"
    solver = str((cfg.get("peft") or {}).get("solver", "sgd"))
    return LOO if within and solver == "ridge" else HOLDOUT


def check_solver_inputs(cfg: Any, datamodules: list) -> None:
    """Raise a one-line CaulkConfigError when ``peft.solver`` cannot run on these points: no
    cached features (``cache.features=false`` or augmentation), a point without validation rows
    (holdout selection), or ``tune.validation=within_n`` with a solver other than ridge. Nothing
    is computed; call it before any work."""
    solver = str((cfg.get("peft") or {}).get("solver", "sgd"))
    if solver not in SOLVERS:
        return
    if (
        str((cfg.get("tune") or {}).get("validation", "holdout")) == "within_n"
        and solver != "ridge"
    ):
        raise CaulkConfigError(
            f"tune.validation=within_n with peft.solver={solver}: only ridge selects λ inside n "
            f"(exact leave-one-out); use peft.solver=ridge or tune.validation=holdout"
        )
    augmented = str(cfg.data.get("augment", "none")) != "none"
    if not (cfg.get("cache") or {}).get("features", True) or augmented:
        raise CaulkConfigError(
            f"peft.solver={solver} needs cached features (cache.features=true, data.augment=none)"
        )
    for dm in datamodules:
        if selection_policy(cfg) == HOLDOUT and len(dm.val_idx) == 0:
            raise CaulkConfigError(
                f"peft.solver={solver} selects λ on validation rows, but the point n={dm.n} "
                f"seed={dm.seed} has none (data.val_size=0?)"
            )


def lambda_grid(peft_cfg: Any) -> np.ndarray:
    """``peft.lambdas`` as float64, sorted from strong to weak regularisation, duplicates dropped."""
    lambdas = np.asarray(list(peft_cfg.get("lambdas") or []), dtype=np.float64)
    if lambdas.size == 0 or not np.all(np.isfinite(lambdas)) or np.any(lambdas <= 0):
        raise CaulkConfigError(
            f"peft.lambdas must be a non-empty list of positive numbers, got {lambdas.tolist()}"
        )
    return np.unique(lambdas)[::-1].copy()


@dataclass
class Rows:
    """Problems' rows, standardised and zero-padded to one length: ``x`` (P, N, D), ``y``
    (P, N), ``weight`` (P, N): 1/n on a problem's rows, 0 on padding."""

    x: torch.Tensor
    y: torch.Tensor
    weight: torch.Tensor

    def __post_init__(self) -> None:
        self.x_t = self.x.transpose(1, 2).contiguous()  # (P, D, N): what ``logits_of`` reads

    @property
    def counts(self) -> torch.Tensor:
        return (self.weight > 0).sum(1)

    def __len__(self) -> int:
        return self.x.shape[0]

    def objective(self, theta: torch.Tensor, lam: torch.Tensor):
        """``objective`` of heads ``theta`` (P, K, D+1) with penalties ``lam`` (P,)."""
        return objective(self, theta, lam)

    def errors(self, theta: torch.Tensor) -> torch.Tensor:
        """``errors`` of heads ``theta`` (P, K, D+1)."""
        return errors(self, theta)

    def keep(self, kept: torch.Tensor) -> Rows:
        """The problems where ``kept`` (P,) is true, padding trimmed to the longest of them."""
        width = int(self.counts[kept].max()) if kept.any() else 0
        return Rows(self.x[kept, :width], self.y[kept, :width], self.weight[kept, :width])

    def heads(self, n_cls: int) -> torch.Tensor:
        """(P, n_cls, D+1) zero heads in the rows' dtype and device."""
        return self.x.new_zeros(len(self), n_cls, self.x.shape[2] + 1)

    def repeat(self, times: int) -> Rows:
        """The problems ``times`` over, one copy after another."""
        return Rows(*(t.repeat(times, *[1] * (t.dim() - 1)) for t in (self.x, self.y, self.weight)))

    def problems(self):
        """(position, x (n, D), y (n,)) of every problem, padding excluded."""
        for p, n in enumerate(self.counts.tolist()):
            yield p, self.x[p, :n], self.y[p, :n]


@dataclass
class RowGroups:
    """Problems' rows in groups of equal length (no padding; the work is the rows' own):
    ``groups`` is a list of (positions of its problems among all ``size``, their Rows)."""

    groups: list[tuple[torch.Tensor, Rows]]
    size: int

    def __len__(self) -> int:
        return self.size

    def _gather(self, per_group: list[torch.Tensor]) -> torch.Tensor:
        first = per_group[0]
        out = first.new_empty(self.size, *first.shape[1:])
        for (ids, _), part in zip(self.groups, per_group, strict=True):
            out[ids] = part
        return out

    def objective(self, theta: torch.Tensor, lam: torch.Tensor):
        """(P,) values and (P, K, D+1) gradients of ``objective``, group by group."""
        parts = [rows.objective(theta[ids], lam[ids]) for ids, rows in self.groups]
        return self._gather([f for f, _ in parts]), self._gather([g for _, g in parts])

    def errors(self, theta: torch.Tensor) -> torch.Tensor:
        """(P,) error of each head on its problem's rows."""
        return self._gather([rows.errors(theta[ids]) for ids, rows in self.groups])

    def keep(self, kept: torch.Tensor) -> RowGroups:
        """The problems where ``kept`` (P,) is true, renumbered in their order."""
        position = torch.cumsum(kept.long(), 0) - 1
        groups = []
        for ids, rows in self.groups:
            mask = kept[ids]
            if mask.any():
                groups.append((position[ids[mask]], rows.keep(mask)))
        return RowGroups(groups, int(kept.sum()))

    def heads(self, n_cls: int) -> torch.Tensor:
        """(P, n_cls, D+1) zero heads in the rows' dtype and device."""
        return self._gather([rows.heads(n_cls) for _, rows in self.groups])

    def problems(self):
        """(position, x (n, D), y (n,)) of every problem, padding excluded."""
        for ids, rows in self.groups:
            for i, x, y in rows.problems():
                yield int(ids[i]), x, y


def standardizer(x: torch.Tensor, head_norm: bool) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(mean, biased var) of the training rows ``x`` (N, D): what the head's BatchNorm stores.
    None without ``head_norm`` (the raw features are used)."""
    return (x.mean(0), x.var(0, unbiased=False)) if head_norm else None


def standardize(x: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """``(x - mean) / sqrt(var + eps)``: BatchNorm1d's evaluation with ``stats``; ``x`` for None."""
    if stats is None:
        return x
    mean, var = stats
    return (x - mean) / torch.sqrt(var + BN_EPS)


def padded_rows(x_all, y_all, idx: list, stats: list) -> Rows:
    """Each point's rows ``idx[p]`` of ``x_all`` standardised with ``stats[p]``, zero-padded."""
    width = max(len(i) for i in idx)
    x = x_all.new_zeros(len(idx), width, x_all.shape[1])
    y = torch.zeros(len(idx), width, dtype=torch.long, device=x_all.device)
    weight = x_all.new_zeros(len(idx), width)
    for p, (rows, st) in enumerate(zip(idx, stats, strict=True)):
        x[p, : len(rows)] = standardize(x_all[rows], st)
        y[p, : len(rows)] = y_all[rows]
        weight[p, : len(rows)] = 1.0 / len(rows)
    return Rows(x, y, weight)


def grouped_rows(x_all, y_all, idx: list, stats: list) -> RowGroups:
    """Each problem's rows ``idx[p]`` of ``x_all`` standardised with ``stats[p]``, problems of
    equal row count stacked in one group."""
    by_length: dict[int, list[int]] = {}
    for p, rows in enumerate(idx):
        by_length.setdefault(len(rows), []).append(p)
    groups = []
    for members in by_length.values():
        rows = padded_rows(x_all, y_all, [idx[p] for p in members], [stats[p] for p in members])
        groups.append((torch.as_tensor(members, device=x_all.device), rows))
    return RowGroups(groups, len(idx))


def logits_of(x_t: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """(P, K, N) logits of heads ``theta`` (P, K, D+1: weights, then the bias) on the rows
    ``x_t`` (P, D, N; classes before rows keeps the softmax and both products contiguous)."""
    return torch.bmm(theta[:, :, :-1], x_t).add_(theta[:, :, -1:])


def errors(rows: Rows, theta: torch.Tensor) -> torch.Tensor:
    """(P,) error of each head on its point's rows (padding excluded)."""
    wrong = (logits_of(rows.x_t, theta).argmax(1) != rows.y).to(rows.weight.dtype)
    return (wrong * (rows.weight > 0)).sum(1) / rows.counts


def objective(rows: Rows, theta: torch.Tensor, lam: torch.Tensor):
    """(P,) mean cross-entropy + λ/2·||W||² per head, and its gradient (P, K, D+1)."""
    logp = torch.log_softmax(logits_of(rows.x_t, theta), 1)
    nll = -logp.gather(1, rows.y[:, None, :]).squeeze(1)
    w = theta[:, :, :-1]
    f = (nll * rows.weight).sum(1) + 0.5 * lam * (w * w).sum((1, 2))
    g_logits = logp.exp_()
    g_logits.scatter_add_(1, rows.y[:, None, :], -torch.ones_like(logp[:, :1, :]))
    g_logits *= rows.weight[:, None, :]
    grad_w = torch.bmm(g_logits, rows.x).add_(lam[:, None, None] * w)
    return f, torch.cat([grad_w, g_logits.sum(2, keepdim=True)], 2)


def _two_loop(g, s_hist, y_hist, rho, gamma, count: int) -> torch.Tensor:
    """The L-BFGS direction ``-H g`` of every problem (pairs with rho = 0 are inert)."""
    order = [(count - 1 - i) % MEMORY for i in range(min(count, MEMORY))]  # newest first
    q, alphas = g.clone(), []
    for j in order:
        a = rho[j] * (s_hist[j] * q).sum(1)
        q -= a[:, None] * y_hist[j]
        alphas.append(a)
    r = gamma[:, None] * q
    for j, a in zip(reversed(order), reversed(alphas), strict=True):
        b = rho[j] * (y_hist[j] * r).sum(1)
        r += (a - b)[:, None] * s_hist[j]
    return -r


class _Lbfgs:
    """One batched L-BFGS run: the state of the problems still running (finished ones are
    written to ``out`` and dropped, so the work shrinks with them)."""

    def __init__(self, rows: Rows | RowGroups, theta, lam: torch.Tensor, tol: float):
        self.shape, self.tol, self.out = theta.shape[1:], tol, theta.clone()
        self.ids = torch.arange(len(theta), device=theta.device)
        self.rows, self.lam, self.count = rows, lam, 0
        self.iters = torch.zeros(len(theta), dtype=torch.long, device=theta.device)
        self.x = theta.reshape(len(theta), -1).clone()
        self.f, g = self.evaluate(self.x)
        self.g = g
        self.s_hist = self.x.new_zeros(MEMORY, *self.x.shape)
        self.y_hist = torch.zeros_like(self.s_hist)
        self.rho = self.x.new_zeros(MEMORY, len(theta))
        self.gamma = self.x.new_ones(len(theta))
        self.drop(self.g.abs().amax(1) <= tol)

    def evaluate(self, x: torch.Tensor):
        f, g = self.rows.objective(x.view(len(x), *self.shape), self.lam)
        return f, g.reshape(len(x), -1)

    def drop(self, finished: torch.Tensor) -> None:
        """Write the finished problems' solutions out and keep only the others."""
        if not finished.any():
            return
        self.out[self.ids[finished]] = self.x[finished].view(-1, *self.shape)
        keep = ~finished
        self.ids, self.x, self.f, self.g = self.ids[keep], self.x[keep], self.f[keep], self.g[keep]
        self.lam, self.gamma = self.lam[keep], self.gamma[keep]
        self.s_hist, self.y_hist = self.s_hist[:, keep], self.y_hist[:, keep]
        self.rho = self.rho[:, keep]
        self.rows = self.rows.keep(keep)

    def direction(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A descent direction and its slope (steepest descent where L-BFGS's is not one)."""
        d = _two_loop(self.g, self.s_hist, self.y_hist, self.rho, self.gamma, self.count)
        slope = (self.g * d).sum(1)
        bad = slope >= 0
        if bad.any():  # forget these problems' pairs
            d[bad], slope[bad] = -self.g[bad], -(self.g[bad] ** 2).sum(1)
            self.rho[:, bad] = 0.0
        return d, slope

    def line_search(self, d, slope):
        """Backtracking (Armijo) from the unit step (1/||g||₁ at the first iteration):
        the new points, values, gradients, and which problems found no decrease. A halving
        evaluates only the problems still searching."""
        step = self.x.new_ones(len(self.x))
        if self.count == 0:
            step = torch.clamp(1.0 / self.g.abs().sum(1), max=1.0)
        x_new, f_new, g_new = self.x.clone(), self.f.clone(), self.g.clone()
        todo = torch.arange(len(step), device=step.device)  # the problems still searching
        rows, lam = self.rows, self.lam
        for _ in range(MAX_HALVINGS):
            trial = self.x[todo] + step[todo, None] * d[todo]
            f, g = rows.objective(trial.view(len(todo), *self.shape), lam)
            ok = f <= self.f[todo] + ARMIJO * step[todo] * slope[todo]
            done = todo[ok]
            x_new[done], f_new[done], g_new[done] = trial[ok], f[ok], g.view(len(todo), -1)[ok]
            if ok.all():
                return x_new, f_new, g_new, torch.zeros_like(step, dtype=torch.bool)
            todo, rows, lam = todo[~ok], rows.keep(~ok), lam[~ok]
            step[todo] *= 0.5
        pending = torch.zeros_like(step, dtype=torch.bool)
        pending[todo] = True
        return x_new, f_new, g_new, pending

    def iterate(self) -> None:
        """One L-BFGS iteration of every running problem."""
        d, slope = self.direction()
        x_new, f_new, g_new, stalled = self.line_search(d, slope)
        s, y = x_new - self.x, g_new - self.g
        sy, yy = (s * y).sum(1), (y * y).sum(1)
        keep = ~stalled & (sy > 1e-10 * yy.clamp(min=1e-300))
        slot = self.count % MEMORY
        self.s_hist[slot] = torch.where(keep[:, None], s, 0.0)
        self.y_hist[slot] = torch.where(keep[:, None], y, 0.0)
        self.rho[slot] = torch.where(keep, 1.0 / sy.where(keep, 1.0), 0.0)
        self.gamma = torch.where(keep, sy / yy.where(keep, 1.0), self.gamma)
        self.x, self.f, self.g, self.count = x_new, f_new, g_new, self.count + 1
        self.iters[self.ids] += 1
        self.drop(stalled | (self.g.abs().amax(1) <= self.tol))


def lbfgs(
    rows: Rows | RowGroups, theta: torch.Tensor, lam: torch.Tensor, tol: float, max_iter: int
):
    """Minimise ``objective`` for every problem (P heads ``theta``, P penalties ``lam``) from
    ``theta``, each until its largest gradient component is <= ``tol``, no step decreases it, or
    ``max_iter`` iterations. Returns (solutions (P, K, D+1), iterations (P,))."""
    run = _Lbfgs(rows, theta, lam, tol)
    while len(run.ids) and run.count < max_iter:
        run.iterate()
    run.drop(torch.ones(len(run.ids), dtype=torch.bool, device=theta.device))
    return run.out, run.iters


def lbfgs_path(rows: Rows | RowGroups, lambdas: np.ndarray, n_cls: int, tol: float, max_iter: int):
    """(L, P, K, D+1) heads of every λ (strong to weak, each warm-started from the previous
    solution; the first from zero) and (P,) total iterations."""
    theta = rows.heads(n_cls)
    path, total = [], torch.zeros(len(theta), dtype=torch.long, device=theta.device)
    for lam in lambdas:
        theta, iters = lbfgs(rows, theta, theta.new_full((len(theta),), float(lam)), tol, max_iter)
        path.append(theta)
        total += iters
    return torch.stack(path), total


def lbfgs_parallel(rows: RowGroups, lambdas: np.ndarray, n_cls: int, tol: float, max_iter: int):
    """``lbfgs_path``'s heads with every (λ, point) one problem of a single batched L-BFGS, each
    from zero: more work than the warm-started path, far fewer sequential iterations."""
    size, n_lam = len(rows), len(lambdas)
    groups = [
        (torch.cat([ids + j * size for j in range(n_lam)]), rows_of.repeat(n_lam))
        for ids, rows_of in rows.groups
    ]
    every = RowGroups(groups, size * n_lam)
    heads = every.heads(n_cls)
    lam = heads.new_tensor(np.repeat(lambdas, size))  # problem j·P + p: λ_j, point p
    theta, iters = lbfgs(every, heads, lam, tol, max_iter)
    return theta.view(n_lam, size, *theta.shape[1:]), iters.view(n_lam, size).sum(0)


@dataclass
class RidgeEig:
    """One problem's ridge, every λ from one eigendecomposition (X, Y centred: the bias is not
    penalised): ``e, Q = eigh(XᵀX)``, ``A = Q``, ``R = QᵀXᵀY`` when n >= D (``primal``), else
    ``e, Q = eigh(XXᵀ)``, ``A = XᵀQ``, ``R = QᵀY``; then ``W(α) = A·diag(1/(e + α))·R``.
    Eigenvalues below the rank tolerance (numpy's ``matrix_rank``'s) are set to 0."""

    x_mean: torch.Tensor  # (D,)
    y_mean: torch.Tensor  # (K,)
    y: torch.Tensor  # (n, K) centred ±1 targets
    e: torch.Tensor  # (rank,)
    q: torch.Tensor
    a: torch.Tensor  # (D, rank)
    r: torch.Tensor  # (rank, K)
    primal: bool

    @classmethod
    def of(cls, x: torch.Tensor, labels: torch.Tensor, n_cls: int) -> RidgeEig:
        """The decomposition of rows ``x`` (n, D) with ``labels`` (n,)."""
        y = 2.0 * F.one_hot(labels, n_cls).to(x.dtype) - 1.0
        x_mean, y_mean = x.mean(0), y.mean(0)
        x, y = x - x_mean, y - y_mean
        primal = len(x) >= x.shape[1]
        e, q = torch.linalg.eigh(x.T @ x if primal else x @ x.T)
        tol = e.abs().max() * max(x.shape) * torch.finfo(x.dtype).eps
        e = torch.where(e > tol, e, torch.zeros_like(e))
        a, r = (q, q.T @ (x.T @ y)) if primal else (x.T @ q, q.T @ y)
        return cls(x_mean, y_mean, y, e, q, a, r, primal)

    def heads(self, alpha: torch.Tensor) -> torch.Tensor:
        """(L, K, D+1) heads (weights, then the bias) for the penalties ``alpha`` (L,)."""
        inv = 1.0 / (self.e[None, :] + alpha[:, None])  # (L, rank)
        w = torch.einsum("dj,lj,jk->lkd", self.a, inv, self.r)  # (L, K, D)
        b = self.y_mean[None, :] - w @ self.x_mean  # (L, K)
        return torch.cat([w, b[:, :, None]], 2)

    def loo_predictions(self, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """(L, n, K) leave-one-out predictions ``y - (y - ŷ)/(1 - h_ii)`` on the rows ``x`` the
        decomposition was made of, with ``h_ii = 1/n + x̃_iᵀ(X̃ᵀX̃ + αI)⁻¹x̃_i`` (the intercept's
        1/n: it is refitted too). In the dual both ``1 - h_ii`` and the residual are sums of
        ``α/(e + α)`` terms (no cancellation at small α)."""
        n = len(self.y)
        if self.primal:
            u = (x - self.x_mean) @ self.q  # (n, D): X̃Q
            inv = 1.0 / (self.e[None, :] + alpha[:, None])  # (L, D)
            one_minus_h = 1.0 - 1.0 / n - torch.einsum("ij,lj->li", u * u, inv)
            residual = self.y[None] - torch.einsum("ij,lj,jk->lik", u, inv, self.r)
        else:
            shrink = alpha[:, None] / (self.e[None, :] + alpha[:, None])  # (L, n): α/(e + α)
            one_minus_h = torch.einsum("ij,lj->li", self.q * self.q, shrink) - 1.0 / n
            residual = torch.einsum("ij,lj,jk->lik", self.q, shrink, self.r)
        y = self.y + self.y_mean
        return y[None] - residual / one_minus_h.clamp(min=torch.finfo(x.dtype).tiny)[:, :, None]


def _alphas(lambdas: np.ndarray, n: int, like: torch.Tensor) -> torch.Tensor:
    """``α = λ·n`` (the module's λ: a penalty on the mean loss) in ``like``'s dtype and device."""
    return torch.as_tensor(lambdas.copy(), dtype=like.dtype, device=like.device) * n


def ridge_path(rows: Rows | RowGroups, lambdas: np.ndarray, n_cls: int) -> torch.Tensor:
    """(L, P, K, D+1) ridge heads to ±1 one-vs-rest targets, every λ (``alpha = λ·n``) from one
    eigendecomposition per point (``RidgeEig``)."""
    return ridge_path_loo(rows, lambdas, n_cls, loo=False)[0]


def ridge_path_loo(
    rows: Rows | RowGroups, lambdas: np.ndarray, n_cls: int, loo: bool = True
) -> tuple[torch.Tensor, np.ndarray | None]:
    """``ridge_path``'s heads and, with ``loo``, the (L, P) exact leave-one-out classification
    error of every λ of every point (``ridge_loo_errors``), from the same decompositions."""
    heads = rows.heads(n_cls)[None].repeat(len(lambdas), 1, 1, 1)
    errors = np.full((len(lambdas), len(rows)), np.nan) if loo else None
    for p, x, labels in rows.problems():
        eig, alpha = RidgeEig.of(x, labels, n_cls), _alphas(lambdas, len(labels), x)
        heads[:, p] = eig.heads(alpha)
        if loo:
            wrong = eig.loo_predictions(x, alpha).argmax(2) != labels[None]
            errors[:, p] = wrong.to(x.dtype).mean(1).cpu().numpy()
    return heads, errors


def ridge_loo_predictions(
    x: torch.Tensor, labels: torch.Tensor, lambdas: np.ndarray, n_cls: int
) -> torch.Tensor:
    """(L, n, K) exact leave-one-out predictions of ridge with an unpenalised intercept on the
    rows ``x`` (n, D) with ``labels`` (n,), for every λ of ``lambdas`` (``alpha = λ·n``): row i's
    prediction by the ridge fitted to the other n - 1 rows with the same ``alpha``. The features
    are taken as given: a point's rows standardised with all n rows' statistics (``head_norm``)
    are the usual approximation to re-standardising without row i; the mean part of it is exact
    (the refitted intercept absorbs any shift), only the per-feature scale is all n rows'."""
    eig = RidgeEig.of(x, labels, n_cls)
    return eig.loo_predictions(x, _alphas(lambdas, len(labels), x))


def loo_fallback_reason(labels: np.ndarray | torch.Tensor) -> str | None:
    """Why leave-one-out cannot choose λ on these labels (a class with a single example: its
    refit never sees the class, so n <= the number of classes always lands here); None if it can."""
    counts = np.bincount(np.asarray(torch.as_tensor(labels).cpu()))
    if counts[counts > 0].min() < 2:
        return "a class has a single training example: leaving it out removes its class"
    return None


def fixed_lambda_index(lambdas) -> int:
    """The index of the grid's middle λ (in λ order; the larger of two middles), the λ used where
    leave-one-out cannot choose."""
    lambdas = np.asarray(lambdas, float)
    return int(np.argsort(lambdas, kind="stable")[len(lambdas) // 2])


def lambda_at_edge(lambdas, index: int) -> str | None:
    """``low`` or ``high`` when ``lambdas[index]`` is the grid's smallest or largest λ (a choice
    the grid may have cut short), else None (and None for a grid of one λ)."""
    lambdas = np.asarray(lambdas, float)
    if len(np.unique(lambdas)) < 2:
        return None
    if lambdas[index] == lambdas.min():
        return "low"
    return "high" if lambdas[index] == lambdas.max() else None


def parallel_lambdas(peft_cfg: Any, device: torch.device) -> bool:
    """Whether ``peft.lambda_path`` solves every λ at once: ``parallel``, or ``auto`` on a GPU
    (where sequential iterations, not work, set the time)."""
    mode = str(peft_cfg.get("lambda_path", "auto"))
    return mode == "parallel" or (mode == "auto" and device.type == "cuda")


def select_lambda(lambdas, val_errors) -> int:
    """The index of the λ with the lowest validation error; ties go to the larger λ."""
    lambdas, val_errors = np.asarray(lambdas, float), np.asarray(val_errors, float)
    order = np.argsort(-lambdas, kind="stable")  # strong to weak: argmin takes the first
    return int(order[np.argmin(val_errors[order])])


def _head_state(theta: torch.Tensor, stats) -> dict[str, torch.Tensor]:
    """A (K, D+1) head and its standardisation as ``TransferModule.head``'s state dict."""
    state = {
        "1.weight": theta[:, :-1].float().cpu().contiguous(),
        "1.bias": theta[:, -1].float().cpu().contiguous(),
    }
    if stats is not None:
        state["0.running_mean"] = stats[0].float().cpu()
        state["0.running_var"] = stats[1].float().cpu()
        state["0.num_batches_tracked"] = torch.tensor(0)
    return state


def _val_errors(pool, y_pool, val: list, stats: list, path: torch.Tensor) -> np.ndarray:
    """(L, P) error of every λ's head on each point's validation rows (NaN where it has none)."""
    out = np.full(tuple(path.shape[:2]), np.nan)
    has = [p for p, v in enumerate(val) if len(v)]
    if has:
        rows = grouped_rows(pool, y_pool, [val[p] for p in has], [stats[p] for p in has])
        out[:, has] = torch.stack([rows.errors(heads[has]) for heads in path]).cpu().numpy()
    return out


def choose_lambda(lambdas, errors, policy: str, labels=None) -> tuple[int, dict[str, Any]]:
    """The index of the selected λ of one point and its ``selected`` record field: ``lambda``,
    ``selection`` (``holdout`` on validation ``errors``, ``loo`` on leave-one-out ``errors``, or
    ``fixed`` where leave-one-out cannot choose on ``labels``, with its ``reason``) and
    ``lambda_at_edge``."""
    reason = loo_fallback_reason(labels) if policy == LOO else None
    if reason is not None:
        j = fixed_lambda_index(lambdas)
        selected = {"lambda": float(lambdas[j]), "selection": FIXED, "reason": reason}
        return j, {**selected, "lambda_at_edge": None}
    j = select_lambda(lambdas, errors)
    edge = lambda_at_edge(lambdas, j)
    return j, {"lambda": float(lambdas[j]), "selection": policy, "lambda_at_edge": edge}


def _candidates(lambdas, errors, key: str, chosen_by: str) -> list[dict[str, Any]]:
    """Each λ (ascending) with its error under ``key`` (None when a fixed λ was used)."""
    return [
        {"lambda": float(lam), key: None if chosen_by == FIXED else float(e)}
        for lam, e in sorted(zip(lambdas, errors, strict=True))
    ]


def _point_head(j: int, p: int, path, stats, selected, candidates, val_err, iters, n) -> dict:
    val = val_err[j, p]
    return {
        "head_state": _head_state(path[j, p], stats[p]),
        "selected": selected,
        "candidates": candidates,
        "val_error": None if np.isnan(val) else float(val),
        "iterations": int(iters[p]),
        "n": n,
    }


def fit_points(cfg: Any, datamodules: list, pool: torch.Tensor, y_pool: torch.Tensor):
    """Fit every λ of ``peft.lambdas`` for every point with ``peft.solver`` and select one per
    point (``selection_policy``: on its validation rows, or by leave-one-out inside its training
    rows). ``pool`` (features) and ``y_pool`` (labels) are the whole pool; only each point's
    ``train_idx`` and ``val_idx`` rows are read. Returns one dict per point: ``head_state``,
    ``selected``, ``candidates`` (λ ascending), ``val_error``, ``iterations``, ``n``."""
    check_solver_inputs(cfg, datamodules)
    solver, lambdas, policy = str(cfg.peft.solver), lambda_grid(cfg.peft), selection_policy(cfg)
    device = fast_loop_device(cfg.trainer)
    pool, y_pool = pool.to(device, DTYPE), y_pool.to(device)
    train = [torch.as_tensor(dm.train_idx, device=device) for dm in datamodules]
    val = [torch.as_tensor(dm.val_idx, device=device) for dm in datamodules]
    stats = [standardizer(pool[t], bool(cfg.peft.get("head_norm", True))) for t in train]
    rows = grouped_rows(pool, y_pool, train, stats)
    n_cls = int(datamodules[0].num_classes)
    loo_err = None
    if solver == "lbfgs":
        tol, max_iter = float(cfg.peft.get("tol", 1e-5)), int(cfg.peft.get("max_iter", 1000))
        solve = lbfgs_parallel if parallel_lambdas(cfg.peft, device) else lbfgs_path
        path, iters = solve(rows, lambdas, n_cls, tol, max_iter)
    else:
        path, loo_err = ridge_path_loo(rows, lambdas, n_cls, loo=policy == LOO)
        iters = torch.ones(len(train), dtype=torch.long)
    val_err = _val_errors(pool, y_pool, val, stats, path)
    chosen_on, key = (loo_err, "loo_error") if policy == LOO else (val_err, "val_error")
    out = []
    for p in range(len(datamodules)):
        j, selected = choose_lambda(lambdas, chosen_on[:, p], policy, y_pool[train[p]])
        cands = _candidates(lambdas, chosen_on[:, p], key, selected["selection"])
        out.append(_point_head(j, p, path, stats, selected, cands, val_err, iters, len(train[p])))
    return out


def solve_points(cfg: DictConfig, datamodules: list, features: CachedFeatures) -> list[dict]:
    """The selected heads of the points of ``datamodules`` on ``features`` (``fit_points``)."""
    pool_labels = CachedFeatureDataModule(datamodules[0], features).labels("pool")
    return fit_points(cfg, datamodules, features.pool, pool_labels)


@torch.no_grad()
def evaluate_head(head: nn.Module, x: torch.Tensor, y: torch.Tensor, device) -> dict[str, float]:
    """Error and mean cross-entropy of ``head`` (eval mode) on features ``x``, labels ``y``."""
    was_training, home = head.training, next(head.parameters()).device
    logits = head.eval().to(device)(x.to(device))
    head.train(was_training).to(home)
    y = y.to(device)
    correct = logits.argmax(1) == y
    error = float(1.0 - correct.float().mean())
    return {"error": error, "loss": float(F.cross_entropy(logits, y)), "correct": correct.cpu()}


def _candidate_log(candidate: dict[str, Any]) -> dict[str, float]:
    """A λ candidate as logged metrics: ``lambda`` and ``val/error`` or ``loo/error``."""
    logged = {"lambda": candidate["lambda"]}
    for key, name in (("val_error", "val/error"), ("loo_error", "loo/error")):
        if candidate.get(key) is not None:
            logged[name] = candidate[key]
    return logged


class SolverEngine(Engine):
    """A linear probe with ``peft.solver`` lbfgs or ridge on cached whole-backbone features:
    every point solved to convergence over a λ grid (the record's ``solver`` says which)."""

    name, generality = "solver", 4
    fits_curve = shares_module = True

    def fit(self, curve: CurveFit) -> dict[int, Any]:
        groups = curve.groups()
        curve.announce(f"{sum(map(len, groups.values()))} points in one {self.name} fit")
        return fit_groups(curve, self.name, solve_points)

    def run(self, job: PointJob, fitted: Any = None) -> PointResult:
        return _run(job, fitted)


def _run(job: PointJob, head: dict[str, Any]) -> PointResult:
    """Load the point's selected head into its module, then test it (the first read of the test
    split) and report it with its λ candidates."""
    if isinstance(head, Exception):
        raise RuntimeError(f"the solver of the curve failed: {head}") from head
    module = job.module
    module.head.load_state_dict(head["head_state"])
    module.n_train_seen = module.train_samples_per_epoch = head["n"]
    y_test = CachedFeatureDataModule(job.datamodule, job.features).labels("test")
    device = fast_loop_device(job.cfg.trainer)
    test = evaluate_head(module.head, job.features.test.float(), y_test, device)
    metrics = {
        **({} if head["val_error"] is None else {"val/error": head["val_error"]}),
        "test/error": test["error"],
        "test/loss": test["loss"],
        "test/n_test": float(len(y_test)),
        "global_steps": head["iterations"],  # full-batch iterations over the λ path
        "epochs": head["iterations"],
    }
    history = [(i, _candidate_log(c)) for i, c in enumerate(head["candidates"])]
    tests = {k: v for k, v in metrics.items() if k.startswith("test/")}
    replay_logs(job.loggers, [*history, (len(history), tests)])
    result = finish_point(job, metrics)
    result.selected, result.candidates = head["selected"], head["candidates"]
    outcomes = outcome_fields(test["correct"].numpy(), y_test.numpy(), len(y_test))
    result.test_correct, result.test_set = outcomes["test_correct"], outcomes["test_set"]
    return result
