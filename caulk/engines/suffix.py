"""The ``batched_suffix`` engine: every point of a curve whose trainable parameters all sit after
its cached prefix (LoRA, adapters, SSF, BitFit or partial with ``peft.last_k_blocks``, and the
head) trained as one computation.

The frozen weights are shared, not copied: one template module runs the suffix (the blocks after
the prefix, the final norm and pooling) through ``torch.func.functional_call`` under
``torch.func.vmap``, with each point's trainable tensors stacked along a leading axis. Each point
keeps its own training subset and sampler order (the schedule the point's own DataLoader draws,
``caulk.engines.batched.point_schedules``), initial values (its module built as the per-point
engine builds it), BatchNorm statistics of the head, learning rate and weight decay (one
optimizer per candidate over its rows of the stacked tensors: the optimizers in
``ELEMENTWISE_OPTIMIZERS`` update each element on its own) and divergence state. Each step runs
every point at once, each batch padded to the longest (points with n below the batch size, or at
an epoch's short last batch, hold fewer rows); each point's loss and head BatchNorm statistics
are over its own rows, and padding changes nothing else since every module of the suffix treats
rows independently (``suffix_unsupported`` refuses BatchNorm in train mode and dropout). On the
demo's LoRA curves one padded computation per step measured faster than one per batch length
(this session's note on ``benchmarks/suffix.py``).
Results equal the ``cached`` engine's point by point to floating-point noise (tested).
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn
from torch.func import functional_call, vmap

from caulk.budget import early_stop_patience
from caulk.cache.data import CachedFeatureDataModule
from caulk.engines.base import CurveFit, Engine, FallBack, PointJob, PointResult
from caulk.engines.batched import finish_fitted, grid_shares_computation, point_schedules
from caulk.engines.early_stop import BestState
from caulk.engines.guards import Diverged
from caulk.engines.lean_suffix import LeanSuffix
from caulk.engines.strategy import fast_loop_device
from caulk.progress import Progress

log = logging.getLogger("caulk.train")

#: rows of the val / test split run through the suffix at once
EVAL_CHUNK = 256


def trainable_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """A module's trainable parameters, detached copies (a point's initial values)."""
    return {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}


def initial_values_key(point) -> tuple[int, str]:
    """What a point's initial values depend on within a curve: its seed and PEFT config (its
    module is built after seeding with the seed, whatever its n): points with equal keys start
    from equal tensors, so their module is built once."""
    return point.seed, json.dumps(point.resolved["peft"], sort_keys=True, default=str)


def suffix_unsupported(module: nn.Module) -> str | None:
    """Why the trained modules of ``module`` (a TransferModule) cannot be batched over padded
    rows, or None: BatchNorm in train mode mixes rows, dropout draws its own random numbers."""
    for m in module.method.train_mode_modules(module.backbone):
        for sub in m.modules():
            if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                return "a BatchNorm layer trains inside the suffix"
            if isinstance(sub, nn.Dropout) and sub.p > 0:
                return "dropout in the trained suffix (e.g. peft.dropout > 0)"
    return None


class _Problems:
    """The stacked state of K points: trainable tensors, head statistics, schedules."""

    def __init__(self, template, states: list, data: list, features, labels, cfg, optimizers):
        t_cfg = cfg.trainer
        self.device = device = fast_loop_device(t_cfg)
        self.budgets = [0] * len(states)  # each point's own step budget
        for _, rows, budget in optimizers:
            self.budgets[rows] = [budget] * len(self.budgets[rows])
        self.steps, self.interval = max(self.budgets), int(t_cfg.val_check_interval)
        self.log_every = int(t_cfg.get("log_every_n_steps", 50) or 50)
        self.template = template.to(device)
        self.template.train()
        for m in self.template.modules():  # vmap has no batching rule for CPU flash attention
            if hasattr(m, "fused_attn"):
                m.fused_attn = False
        self.suffix = LeanSuffix(self.template.backbone, self.template.cached_prefix)
        self.head_norm = isinstance(self.template.head[0], nn.BatchNorm1d)
        self.names = list(trainable_tensors(template))
        self.params = {n: torch.stack([s[n] for s in states]).to(device) for n in self.names}
        for t in self.params.values():
            t.requires_grad_(True)
        self.grads = {n: torch.zeros_like(t) for n, t in self.params.items()}
        # one optimizer (and cosine schedule) per candidate and budget, stepped within it
        self.optimizers = [(factory(self._views(rows)), b) for factory, rows, b in optimizers]
        cosine = cfg.get("scheduler", "cosine") != "none"
        self.schedulers = [
            (torch.optim.lr_scheduler.CosineAnnealingLR(o, b), b)
            for o, b in (self.optimizers if cosine else [])
        ]
        self.pool_in = self.suffix.inputs(features.pool.to(device))
        self.test_in = self.suffix.inputs(features.test.to(device))
        self.n_test = len(features.test)
        self.y_pool, self.y_test = labels[0].to(device), labels[1].to(device)
        self.k = len(states)
        self.batch = max(int(d.dm.cfg.batch_size) for d in data)
        idx, mask, self.counts = point_schedules(data, self.steps, self.batch, self.budgets)
        self.idx = idx.to(device)  # (steps, K, batch): each batch's rows first, then padding
        self.lengths_t = mask.sum(2).to(device)  # (steps, K) rows in each point's batch
        self.lengths = self.lengths_t.tolist()
        bn = self.template.head[0]
        self.eps, self.mom = (bn.eps, bn.momentum) if self.head_norm else (0.0, 0.0)
        dim = self.params["head.1.weight"].shape[2]
        self.r_mean = torch.zeros(self.k, dim, device=device)
        self.r_var = torch.ones(self.k, dim, device=device)
        self.tracked = torch.zeros(self.k, dtype=torch.long, device=device)
        self.alive = torch.ones(self.k, dtype=torch.bool, device=device)

    def _views(self, rows: slice) -> list[nn.Parameter]:
        """Rows ``rows`` of every stacked tensor as parameters sharing its storage and grad."""
        views = []
        for n in self.names:
            part = nn.Parameter(self.params[n].data[rows])
            part.grad = self.grads[n][rows]
            views.append(part)
        return views

    def features(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """(K, B, F) the suffix's output for every point on its rows' ``LeanSuffix.inputs``
        (each K, B, ...)."""
        inner = {n: t for n, t in self.params.items() if n.startswith("backbone.")}

        def one(params: dict, *rows: torch.Tensor) -> torch.Tensor:
            return functional_call(self.suffix, params, rows, tie_weights=False)

        return vmap(one)(inner, *inputs)

    def _standardize(self, h: torch.Tensor, train: bool, counts=None) -> torch.Tensor:
        """The head's BatchNorm (no affine) of every point on its batch ``h`` (K, B, F),
        of which the first ``counts`` (K,) rows are each point's own (the rest padding; None:
        every row): batch statistics over those rows in training (a batch of one: the running
        ones, as FeatureStandardize), which also move the running ones; the running ones in
        evaluation."""
        if not self.head_norm:
            return h
        running = (h - self.r_mean[:, None]) / torch.sqrt(self.r_var[:, None] + self.eps)
        if not train:
            return running
        if counts is None:
            counts = torch.full((h.shape[0],), h.shape[1], device=h.device)
        rows = (torch.arange(h.shape[1], device=h.device) < counts[:, None]).unsqueeze(2)
        c = counts.clamp(min=1).to(h.dtype)[:, None]
        mean = torch.where(rows, h, 0.0).sum(1) / c
        var = torch.where(rows, (h - mean[:, None]).square(), 0.0).sum(1) / c
        several = counts > 1
        with torch.no_grad():
            live = (self.alive & several)[:, None]
            unbiased = var * c / (c - 1).clamp(min=1)
            new_mean = (1 - self.mom) * self.r_mean + self.mom * mean
            new_var = (1 - self.mom) * self.r_var + self.mom * unbiased
            self.r_mean = torch.where(live, new_mean, self.r_mean)
            self.r_var = torch.where(live, new_var, self.r_var)
            self.tracked += live[:, 0].long()
        batch = (h - mean[:, None]) / torch.sqrt(var[:, None] + self.eps)
        return torch.where(several[:, None, None], batch, running)

    def logits(self, inputs: tuple, train: bool, counts=None) -> torch.Tensor:
        """(K, B, classes) every point's logits on its rows' ``inputs`` (see ``features``;
        ``counts``: see ``_standardize``)."""
        h = self._standardize(self.features(inputs), train, counts)
        w, b = self.params["head.1.weight"], self.params["head.1.bias"]
        return torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))

    def step(self, t: int) -> torch.Tensor:
        """Training step ``t`` of every live point; returns each point's batch loss (K,). Every
        point's batch is padded to the longest (rows the suffix treats independently, each
        point's loss and head statistics over its own rows): one computation per step."""
        counts = self.lengths_t[t]  # 0: the point's budget has ended
        width = max(self.lengths[t])
        rows = self.idx[t][:, :width]
        logits = self.logits(_rows(self.pool_in, rows), True, counts)
        ce = F.cross_entropy(logits.transpose(1, 2), self.y_pool[rows], reduction="none")
        own = torch.arange(width, device=self.device) < counts[:, None]
        loss = torch.where(own, ce, 0.0).sum(1) / counts.clamp(min=1)
        keep = torch.isfinite(loss) & self.alive & (counts > 0)
        total = torch.where(keep, loss, torch.zeros_like(loss)).sum()
        grads = torch.autograd.grad(total, [self.params[n] for n in self.names])
        for n, g in zip(self.names, grads, strict=True):
            self.grads[n].copy_(g)
        for optimizer, budget in self.optimizers:
            if t < budget:
                optimizer.step()
        for scheduler, budget in self.schedulers:
            if t < budget:
                scheduler.step()
        return torch.where(counts > 0, loss.detach(), float("nan"))

    @torch.no_grad()
    def evaluate(self, split: str, rows_per_point: list[torch.Tensor]) -> list:
        """Error and mean loss of every point on its rows of ``split``: ``val`` (rows of the
        pool) or ``test`` (``correct`` too)."""
        x_all, y_all = (
            (self.pool_in, self.y_pool) if split == "val" else (self.test_in, self.y_test)
        )
        self.template.eval()
        width = max(len(r) for r in rows_per_point)
        rows = torch.zeros(self.k, width, dtype=torch.long, device=self.device)  # 0: padding
        for p, r in enumerate(rows_per_point):
            rows[p, : len(r)] = r
        right, ce = [], []
        for lo in range(0, width, EVAL_CHUNK):
            r = rows[:, lo : lo + EVAL_CHUNK]
            logits = self.logits(_rows(x_all, r), False)
            right.append(logits.argmax(2) == y_all[r])
            ce.append(F.cross_entropy(logits.transpose(1, 2), y_all[r], reduction="none"))
        self.template.train()
        right, ce = torch.cat(right, 1), torch.cat(ce, 1)
        out = []
        for p, r in enumerate(rows_per_point):
            n = len(r)
            res = {
                f"{split}/error": 1.0 - float(right[p, :n].float().mean()),
                f"{split}/loss": float(ce[p, :n].mean()),
            }
            if split == "test":
                res["correct"] = right[p, :n].cpu()
            out.append(res)
        return out

    @torch.no_grad()
    def load(self, p: int, state: dict[str, torch.Tensor]) -> None:
        """Put ``state`` (``state(p)``'s form) back as point ``p``'s tensors."""
        for n in self.names:
            self.params[n][p] = state[n].to(self.device)
        if self.head_norm:
            self.r_mean[p] = state["head.0.running_mean"].to(self.device)
            self.r_var[p] = state["head.0.running_var"].to(self.device)
            self.tracked[p] = state["head.0.num_batches_tracked"].to(self.device)

    def counts_at(self, data, steps: int) -> dict[str, int]:
        """The epoch counts of the point of ``data`` had its training ended after ``steps``."""
        return point_schedules([data], steps, self.batch)[2][0]

    def stop(self, p: int, step: int) -> None:
        """Point ``p`` trains no step from ``step`` on (its early stop): it stops costing."""
        self.budgets[p] = step
        for lengths in self.lengths[step:]:
            lengths[p] = 0
        self.lengths_t[step:, p] = 0

    def state(self, p: int) -> dict[str, torch.Tensor]:
        """Point ``p``'s trained tensors, as its TransferModule's ``trainable_state_dict``."""
        state = {n: t[p].detach().cpu().clone() for n, t in self.params.items()}
        if self.head_norm:
            state["head.0.running_mean"] = self.r_mean[p].cpu().clone()
            state["head.0.running_var"] = self.r_var[p].cpu().clone()
            state["head.0.num_batches_tracked"] = self.tracked[p].cpu().clone()
        return state


def _rows(inputs: tuple[torch.Tensor, ...], rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(t[rows] for t in inputs)


class _PointView:
    """Point ``p`` of a batched fit as ``BestState`` sees a module: its trainable tensors."""

    def __init__(self, fit: _Problems, p: int):
        self.fit, self.p = fit, p

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return self.fit.state(self.p)


def fit_suffix_points(
    template,
    states: list,
    data: list,
    features,
    labels: tuple,
    cfg: Any,
    optimizers: list,
    patience: int | None = None,
    progress=None,
) -> list[dict[str, Any]]:
    """Train K points as one computation: ``template`` is a TransferModule of the curve (its
    frozen weights serve every point), ``states`` each point's initial trainable tensors
    (``trainable_tensors`` of its module, built as the per-point engine builds it), ``data``
    their CachedFeatureDataModules, ``optimizers`` (optimizer factory, slice of points, step
    budget) per candidate and budget: each point trains its own budget of steps, a finished
    point stops costing. ``patience``: early stopping per point (as ``BestState``: the best
    validation state kept, the point stopped after ``patience`` checks without a better one,
    tested in its best state). ``progress``: a ``caulk.progress.Progress`` told of each step.
    Returns per point what ``caulk.engines.batched.finish_fitted``
    reports: its trained ``state``, ``metrics``, logged ``history``, ``diverged_at`` (the first
    step whose loss was not finite) and ``outcome_fields``."""
    if cfg.trainer.get("deterministic"):
        torch.use_deterministic_algorithms(True)
    fit = _Problems(template, states, data, features, labels, cfg, optimizers)
    trace = _Trace(fit.k, patience)
    planned = list(fit.budgets)
    val_rows = [torch.as_tensor(d.dm.val_idx, device=fit.device) for d in data]
    for t in range(fit.steps):
        if all(b <= t for b in fit.budgets):  # every point stopped early
            break
        if progress is not None:
            progress.begin()
        trace.trained(fit, t, fit.step(t))
        if progress is not None:
            progress.end()
        if (t + 1) % fit.interval == 0:
            trace.validated(fit, t, val_rows)
    return trace.results(fit, data, planned)


class _Trace:
    """What a batched fit records per point as it trains: logged metrics, the last validation,
    the step it diverged at, its best state under early stopping."""

    def __init__(self, k: int, patience: int | None):
        self.history: list[list[tuple[int, dict[str, float]]]] = [[] for _ in range(k)]
        self.last_val: list[dict[str, float]] = [{} for _ in range(k)]
        self.diverged: list[int | None] = [None] * k
        self.best = [BestState(patience) for _ in range(k)] if patience is not None else None

    def trained(self, fit: _Problems, t: int, losses: torch.Tensor) -> None:
        """After step ``t``: divergence (a loss not finite) and the logged training losses."""
        values = losses.tolist()
        for p in (p for p in range(fit.k) if fit.budgets[p] > t):
            if not math.isfinite(values[p]) and fit.alive[p]:
                self.diverged[p] = t
                fit.alive[p] = False
            if (t + 1) % fit.log_every == 0:
                self.history[p].append((t, {"train/loss": values[p]}))

    def validated(self, fit: _Problems, t: int, val_rows: list) -> None:
        """The validation check after step ``t`` of the points still training; early stops."""
        checked = [p for p in range(fit.k) if fit.budgets[p] > t and len(val_rows[p])]
        if not checked:
            return
        for p, val in enumerate(fit.evaluate("val", val_rows)):
            if p in checked:
                self.last_val[p] = val
                self.history[p].append((t, val))
                view, error = _PointView(fit, p), val["val/error"]
                if self.best is not None and self.best[p].update(view, error, t + 1):
                    fit.stop(p, t + 1)

    def results(self, fit: _Problems, data: list, planned: list[int]) -> list[dict[str, Any]]:
        """Each point tested (in its best state under early stopping), as ``fit_suffix_points``
        returns it."""
        best = self.best or [None] * fit.k
        for p, b in enumerate(best):
            if b is not None and b.state is not None:
                fit.load(p, b.state)
        test_rows = [torch.arange(fit.n_test, device=fit.device)] * fit.k
        results = []
        for p, tst in enumerate(fit.evaluate("test", test_rows)):
            tst["test/n_test"] = float(fit.n_test)
            correct, budget = tst.pop("correct"), fit.budgets[p]
            self.history[p].append((budget, tst))
            counts = fit.counts[p] if budget == planned[p] else fit.counts_at(data[p], budget)
            stopped = {} if best[p] is None else best[p].metrics()
            results.append(
                {
                    "state": fit.state(p),
                    "metrics": {
                        **self.last_val[p],
                        **tst,
                        **stopped,
                        "global_steps": budget,
                        **counts,
                    },  # fmt: skip
                    "history": self.history[p],
                    "diverged_at": self.diverged[p],
                    "outcome_fields": (correct.numpy(), fit.y_test.cpu().numpy()),
                }
            )
        return results


class BatchedSuffixEngine(Engine):
    """Every point's trainable suffix after a cached prefix trained as one computation (one per
    candidate when the candidates' configs or modules differ in more than their optimizers).
    ``fit`` falls back to the per-point ``cached`` engine (``FallBack``) when a module cannot be
    batched."""

    name, generality = "batched_suffix", 2
    fits_curve = shares_module = True  # run() loads each point's trained tensors into one module
    work_by_steps = True

    def fit(self, curve: CurveFit) -> dict[int, Any]:
        groups = curve.groups()
        cfgs = [curve.group_cfg(key, idx) for key, idx in groups.items()]
        template, states, built = None, {}, {}
        for i in (i for idx in groups.values() for i in idx):  # one module at a time: K states
            key = initial_values_key(curve.points[i])
            if key not in built:
                module = curve.initial_module(i)
                template = template or module
                built[key] = trainable_tensors(module)
            states[i] = built[key]
        why = suffix_unsupported(template)
        if why:
            raise FallBack(why)
        shapes = {i: {n: t.shape for n, t in s.items()} for i, s in states.items()}
        together = grid_shares_computation(cfgs, own=("trainer.max_steps",)) and all(
            v == shapes[next(iter(shapes))] for v in shapes.values()
        )
        parts = [list(groups.values())] if together else [[idx] for idx in groups.values()]
        curve.announce(f"{len(states)} points in {len(parts)} {self.name} fit(s)")
        fits: dict[int, Any] = {}
        for part in parts:
            fits.update(_fit_part(curve, part, template, states))
        return fits

    def run(self, job: PointJob, fitted: Any = None) -> PointResult:
        """Load the point's trained tensors (trained with the other points of its curve) and
        report it."""
        if isinstance(fitted, Exception):
            raise RuntimeError(f"the batched suffix fit of the curve failed: {fitted}") from fitted
        if fitted["diverged_at"] is not None:
            raise Diverged(fitted["diverged_at"])
        job.module.load_state_dict(fitted["state"], strict=False)
        return finish_fitted(job, fitted)


def _fit_part(curve: CurveFit, part: list[list[int]], template, states: dict) -> dict[int, Any]:
    """One batched_suffix computation over the candidates ``part`` (lists of point indices):
    one optimizer per candidate and step budget, over contiguous rows. A failure of the
    computation becomes each of its points' failure."""
    budget = {i: _point_budget(curve.points[i]) for idx in part for i in idx}
    order, optimizers = [], []
    for idx in part:
        for b in sorted({budget[i] for i in idx}):
            rows = [i for i in idx if budget[i] == b]
            factory = instantiate(curve.points[rows[0]].cfg.optimizer)
            optimizers.append((factory, slice(len(order), len(order) + len(rows)), b))
            order += rows
    data = [CachedFeatureDataModule(curve.points[i].datamodule, curve.features) for i in order]
    labels = (data[0].labels("pool"), data[0].labels("test"))
    steps, cfg = max(budget.values()), curve.points[order[0]].cfg
    label = f"{cfg.model.name} {cfg.peft.name}: {len(order)} points"
    progress = (
        Progress("batched step", steps, label, every=max(1, steps // 10)) if curve.show else None
    )
    try:
        fitted = fit_suffix_points(
            template, [states[i] for i in order], data, curve.features, labels, cfg, optimizers,
            early_stop_patience(cfg), progress,
        )  # fmt: skip
    except Exception as e:
        log.warning("the batched_suffix fit of the curve failed: %s: %s", type(e).__name__, e)
        fitted = [e] * len(order)
    finally:
        if progress is not None:
            progress.close()
    return dict(zip(order, fitted, strict=True))


def _point_budget(point) -> int:
    """The point's step budget: its own (``budget.mode=epochs``) or ``trainer.max_steps``."""
    return int(point.step_budget or point.cfg.trainer.max_steps)
