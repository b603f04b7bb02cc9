"""The linear heads of all a curve's points trained on cached whole-backbone features as one
batched computation (the ``batched_heads`` engine)."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from caulk.cache.data import CachedFeatureDataModule, IndexedBatches, take_batch
from caulk.cache.extract import CachedFeatures
from caulk.engines.base import (
    CurveFit,
    Engine,
    PointJob,
    PointResult,
    fit_groups,
    outcome_fields,
)
from caulk.engines.cached import finish_point, replay_logs
from caulk.engines.guards import Diverged
from caulk.engines.strategy import fast_loop_device

log = logging.getLogger("caulk.train")


def _index_loader(cached) -> torch.utils.data.DataLoader:
    """The point's training DataLoader (same sampler and seed) yielding pool positions only."""
    t = torch.as_tensor(cached.dm.train_idx)
    return torch.utils.data.DataLoader(
        IndexedBatches(t, t, t),
        batch_size=int(cached.dm.cfg.batch_size),
        shuffle=True,
        collate_fn=take_batch,
        generator=torch.Generator().manual_seed(cached.dm.seed),
    )


def _sampler_batches(loader):
    """One epoch of ``loader``'s batches of positions, drawn the way its iterator draws them,
    without iterating the sampler index by index or fetching any data."""
    perm = _sampler_permutations(loader, 1)[0]
    return list(loader.dataset.index[perm].split(loader.batch_size))


def _sampler_permutations(loader, epochs: int) -> torch.Tensor:
    """(epochs, n): the order RandomSampler gives the n examples in each of ``epochs`` successive
    epochs. Each epoch, a DataLoader iterator draws a base seed from the generator, then the
    sampler draws ``randperm(n)`` and its empty tail ``randperm(n)[: num_samples % n]``."""
    g, n = loader.generator, len(loader.dataset)
    perms = torch.empty(epochs, n, dtype=torch.long)
    seed, tail = torch.empty((), dtype=torch.int64), torch.empty(n, dtype=torch.long)
    for e in range(epochs):
        seed.random_(generator=g)
        torch.randperm(n, generator=g, out=perms[e])
        torch.randperm(n, generator=g, out=tail)
    return perms


def _loader_batches(loader):
    for _, _, rows in loader:
        yield rows


def _schedule(make_loader, max_steps: int, batch: int):
    """Positions (steps, batch) and mask of every step, with the epoch counts Lightning keeps.

    Draws the sampler's permutations directly (fast); checks its first epoch and the first batch
    of the next (the generator carries over) against a real DataLoader iteration and uses the
    DataLoader instead if they differ (another torch's sampler).
    """
    check = min(max_steps, len(make_loader()) + 2)  # + the None between epochs
    real = [r for _, r in zip(range(check), _epochs(make_loader(), _loader_batches), strict=False)]
    fast = [r for _, r in zip(range(check), _epochs(make_loader(), _sampler_batches), strict=False)]
    same = all(
        (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))
        for a, b in zip(real, fast, strict=True)
    )
    loader = make_loader()
    per_epoch, size, n = len(loader), loader.batch_size, len(loader.dataset)
    epochs_started = -(-max_steps // per_epoch)
    rows = torch.zeros(epochs_started, per_epoch * batch, dtype=torch.long)
    mask = torch.zeros(epochs_started, per_epoch * batch, dtype=torch.bool)
    if same:  # all epochs' permutations at once, each batch put at its row of the padded layout
        slot = torch.arange(n)
        slot = slot // size * batch + slot % size
        rows[:, slot] = loader.dataset.index[_sampler_permutations(loader, epochs_started)]
        mask[:, slot] = True
    for e in range(0 if same else epochs_started):
        for k, b in enumerate(_loader_batches(loader)):
            rows[e, k * batch : k * batch + len(b)] = b
            mask[e, k * batch : k * batch + len(b)] = True
    taken = max_steps - (epochs_started - 1) * per_epoch  # batches of the last epoch started
    complete = taken == per_epoch
    seen, drawn = len(loader.dataset.index.unique()), len(loader.dataset)  # a whole epoch
    if epochs_started == 1 and not complete:
        drawn_rows = rows[0][mask[0]][: taken * size]
        seen, drawn = len(drawn_rows.unique()), len(drawn_rows)
    completed = epochs_started - 1 + complete  # the last epoch counts if it ended here
    idx, mask = rows.view(-1, batch)[:max_steps], mask.view(-1, batch)[:max_steps]
    return idx, mask, {"epochs": completed, "n_train_seen": seen, "per_epoch": drawn}


def _epochs(loader, batches):
    """Batches of endless epochs, with None between epochs."""
    while True:
        yield from batches(loader)
        yield None


def _standardize(x, mean, var, eps):
    return (x - mean.unsqueeze(1)) / torch.sqrt(var.unsqueeze(1) + eps)


def _initial_heads(points: list, dim: int, n_cls: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every point's head weights and biases, drawn as ``TransferModule`` draws its head."""
    weights, biases = torch.empty(len(points), n_cls, dim), torch.empty(len(points), n_cls)
    for p, point in enumerate(points):
        # TransferModule's head is drawn from the CPU generator after seed_everything(seed);
        # seeding only that generator skips the ~1 ms per call of seeding every device
        torch.default_generator.manual_seed(point.dm.seed)
        lin = nn.Linear(dim, n_cls)  # consumes the RNG exactly as TransferModule's head does
        weights[p], biases[p] = lin.weight.detach(), lin.bias.detach()
    return weights, biases


def point_schedules(points: list, steps: int, batch: int, budgets: list[int] | None = None):
    """(idx, mask) of shape (steps, points, batch) and each point's epoch counts; ``budgets``:
    each point's own step budget (<= steps; its mask is False after it), else ``steps`` each."""
    idx = torch.zeros(steps, len(points), batch, dtype=torch.long)
    mask = torch.zeros(steps, len(points), batch, dtype=torch.bool)
    counts = []
    for p, point in enumerate(points):
        own = steps if budgets is None else budgets[p]
        i, m, c = _schedule(partial(_index_loader, point), own, batch)
        idx[:own, p], mask[:own, p] = i, m
        counts.append(c)
    return idx, mask, counts


class _BatchedHeads:
    """The state of a batched fit: all heads in one parameter, running BatchNorm statistics,
    each point's schedule, and the per-step weights of the masked mean loss."""

    def __init__(self, points: list, features: CachedFeatures, labels: tuple, cfg: Any, opt):
        t_cfg = cfg.trainer
        self.device = device = fast_loop_device(t_cfg)
        self.steps, self.interval = int(t_cfg.max_steps), int(t_cfg.val_check_interval)
        self.log_every = int(t_cfg.get("log_every_n_steps", 50) or 50)
        self.batch = batch = max(int(p.dm.cfg.batch_size) for p in points)
        self.pool, self.test = features.pool.to(device), features.test.to(device)
        self.y_pool, self.y_test = labels[0].to(device), labels[1].to(device)
        self.n_cls, self.dim, self.n_pts = points[0].num_classes, self.pool.shape[1], len(points)
        weights, biases = _initial_heads(points, self.dim, self.n_cls)
        idx, mask, self.counts = point_schedules(points, self.steps, batch)
        # one tensor holds every head's weight and bias: the elementwise optimizer takes one step
        # over it instead of two (each of its steps is a dozen small ops)
        self.heads = nn.Parameter(torch.cat([weights, biases.unsqueeze(2)], 2).to(device))
        self.w, self.b = self.heads[:, :, : self.dim], self.heads[:, :, self.dim]
        self.heads.grad = torch.zeros_like(self.heads)
        self.grad_w, self.grad_b = (
            self.heads.grad[:, :, : self.dim],
            self.heads.grad[:, :, self.dim],
        )
        cosine = cfg.get("scheduler", "cosine") != "none"
        self.optimizers = [factory(params) for factory, params in self._param_groups(opt)]
        self.schedulers = (
            [torch.optim.lr_scheduler.CosineAnnealingLR(o, self.steps) for o in self.optimizers]
            if cosine
            else []
        )
        bn = nn.BatchNorm1d(self.dim, affine=False)  # FeatureStandardize's eps and momentum
        self.eps, self.mom = bn.eps, bn.momentum
        self.r_mean = torch.zeros(self.n_pts, self.dim, device=device)
        self.r_var = torch.ones(self.n_pts, self.dim, device=device)
        self.tracked = torch.zeros(self.n_pts, dtype=torch.long, device=device)
        self.idx, self.mask = idx.to(device), mask.to(device)
        self._loss_weights()

    def _loss_weights(self) -> None:
        # d(mean masked cross-entropy)/d(logits) = (softmax - onehot) * mask / c
        self.mf = self.mask.to(self.pool.dtype)
        self.counts_per_step = self.mf.sum(2)  # (steps, points): rows in each point's batch
        self.row_weight = self.mf / self.counts_per_step.unsqueeze(2)
        self.unbias = self.counts_per_step / (self.counts_per_step - 1).clamp(min=1)
        # a batch of one uses the running statistics
        self.any_single = (self.counts_per_step == 1).any(1).tolist()
        self.onehot = F.one_hot(self.y_pool, self.n_cls).to(self.pool.dtype)
        self.mean_weight = self.row_weight.unsqueeze(2)  # (steps, points, 1, batch): a bmm mean

    def evaluate(self, x_all, y_all, rows_per_point, head_norm: bool, split: str) -> list[dict]:
        """Error and mean loss of every point's head on its rows (one batched pass when the
        points share their rows, as val and test do)."""
        shared = all(torch.equal(r, rows_per_point[0]) for r in rows_per_point)
        groups = [(slice(None), rows_per_point[0])] if shared else list(enumerate(rows_per_point))
        out: list[dict[str, float]] = [{} for _ in range(self.n_pts)]
        for sel, rows in groups:
            x, y = x_all[rows], y_all[rows]
            mean, var = self.r_mean[sel], self.r_var[sel]
            ws, bs = self.w[sel], self.b[sel]
            if not shared:
                mean, var, ws, bs = mean[None], var[None], ws[None], bs[None]
            x = x.expand(len(ws), *x.shape)
            if head_norm:
                x = _standardize(x, mean, var, self.eps)
            logits = torch.baddbmm(bs.unsqueeze(1), x, ws.transpose(1, 2))
            right = logits.argmax(2) == y
            errs = (1.0 - right.float().mean(1)).tolist()
            ce = F.cross_entropy(logits.transpose(1, 2), y.expand(len(ws), -1), reduction="none")
            losses = ce.mean(1).tolist()
            at = range(self.n_pts) if shared else [sel]
            for i, (p, err, loss) in enumerate(zip(at, errs, losses, strict=True)):
                out[p] = {f"{split}/error": err, f"{split}/loss": loss}
                if split == "test":  # which rows each head got right: the record keeps them
                    out[p]["correct"] = right[i].cpu()
        return out

    def _normalize_with_singles(self, t: int, x: torch.Tensor) -> torch.Tensor:
        """Standardise a step's batches where some point's batch has one row (running stats)."""
        m, c = self.mf[t].unsqueeze(2), self.counts_per_step[t].unsqueeze(1)
        mean = (x * m).sum(1) / c
        var = (((x - mean.unsqueeze(1)) ** 2) * m).sum(1) / c
        single = c == 1
        upd = ~single
        x = _standardize(
            x,
            torch.where(single, self.r_mean, mean),
            torch.where(single, self.r_var, var),
            self.eps,
        )
        new_mean = (1 - self.mom) * self.r_mean + self.mom * mean
        new_var = (1 - self.mom) * self.r_var + self.mom * var * self.unbias[t].unsqueeze(1)
        self.r_mean = torch.where(upd, new_mean, self.r_mean)
        self.r_var = torch.where(upd, new_var, self.r_var)
        self.tracked += upd.squeeze(1).long()
        return x

    def _normalize(self, t: int, x: torch.Tensor) -> torch.Tensor:
        """Standardise a step's batches with their masked statistics (two bmms)."""
        mean = torch.bmm(self.mean_weight[t], x)
        centred = x - mean
        var = torch.bmm(self.mean_weight[t], centred * centred).squeeze(1)
        x = centred * torch.rsqrt(var + self.eps).unsqueeze(1)
        self.r_mean = self.r_mean.mul_(1 - self.mom).add_(mean.squeeze(1), alpha=self.mom)
        unbiased = var * self.unbias[t].unsqueeze(1)
        self.r_var = self.r_var.mul_(1 - self.mom).add_(unbiased, alpha=self.mom)
        self.tracked += 1
        return x

    def step(self, t: int, head_norm: bool) -> torch.Tensor:
        """Step ``t`` of every head (gradients by hand, the real optimizer); returns the logits."""
        flat = self.idx[t].view(-1)
        x = self.pool.index_select(0, flat).view(self.n_pts, self.batch, self.dim)
        if head_norm and self.any_single[t]:
            x = self._normalize_with_singles(t, x)
        elif head_norm:
            x = self._normalize(t, x)
        logits = torch.baddbmm(self.b.unsqueeze(1), x, self.w.transpose(1, 2))
        target = self.onehot.index_select(0, flat).view(self.n_pts, self.batch, self.n_cls)
        grad = torch.softmax(logits, 2).sub_(target).mul_(self.row_weight[t].unsqueeze(2))
        self.grad_w.copy_(torch.bmm(grad.transpose(1, 2), x))
        torch.sum(grad, 1, out=self.grad_b)
        for optimizer in self.optimizers:
            optimizer.step()
        for scheduler in self.schedulers:
            scheduler.step()
        return logits

    def _param_groups(self, opt) -> list[tuple[Any, list[torch.Tensor]]]:
        """(optimizer factory, its parameters): all heads under one optimizer, or, for a grid
        (``opt`` a list of (factory, points slice)), each slice of heads under its own
        optimizer, as a parameter sharing the heads' storage and gradient."""
        if not isinstance(opt, list):
            return [(opt, [self.heads])]
        groups = []
        for factory, rows in opt:
            part = nn.Parameter(self.heads.data[rows])  # a view: its updates are the heads'
            part.grad = self.heads.grad[rows]
            groups.append((factory, [part]))
        return groups

    def train_losses(self, t: int, logits: torch.Tensor) -> list[float]:
        """Each point's mean training loss at step ``t``."""
        ce = F.cross_entropy(logits.transpose(1, 2), self.y_pool[self.idx[t]], reduction="none")
        return ((ce * self.mf[t]).sum(1) / self.counts_per_step[t]).tolist()

    def head_state(self, p: int, head_norm: bool) -> dict[str, torch.Tensor]:
        """Point ``p``'s head as ``TransferModule.head``'s state dict."""
        state = {
            "1.weight": self.w[p].detach().cpu().clone(),
            "1.bias": self.b[p].detach().cpu().clone(),
        }
        if head_norm:
            state["0.running_mean"] = self.r_mean[p].cpu().clone()
            state["0.running_var"] = self.r_var[p].cpu().clone()
            state["0.num_batches_tracked"] = self.tracked[p].cpu().clone()
        return state


def fit_linear_heads(
    points: list, features, labels: tuple, cfg: Any, optimizer_factory, head_norm: bool
) -> list[dict[str, Any]]:
    """Train the linear heads of many (n, seed) points on cached features as one computation.

    ``points`` are CachedFeatureDataModules. Each point keeps its own head (BatchNorm without
    affine + Linear, initialised as ``TransferModule`` does after ``seed_everything(seed)``), its
    own batches (its own seeded sampler; short batches padded and masked), BatchNorm statistics,
    loss and optimizer state; stacking only batches the arithmetic, because the optimizers in
    ``ELEMENTWISE_OPTIMIZERS`` update each element on its own. Results equal one fast loop per
    point to floating-point noise (tested). Returns per point: ``head_state`` (for
    ``module.head.load_state_dict``), the metrics ``fit_cached`` returns, counts, a ``history``
    of logged metrics and ``diverged_at``, the first step after which its head was not finite.
    """
    if cfg.trainer.get("deterministic"):
        torch.use_deterministic_algorithms(True)
    fit = _BatchedHeads(points, features, labels, cfg, optimizer_factory)
    history: list[list[tuple[int, dict[str, float]]]] = [[] for _ in points]
    last_val: list[dict[str, float]] = [{} for _ in points]
    val_rows = [torch.as_tensor(p.dm.val_idx, device=fit.device) for p in points]
    has_val = any(len(r) for r in val_rows)
    diverged = torch.full((len(points),), -1, dtype=torch.long, device=fit.device)
    with torch.no_grad():
        for t in range(fit.steps):
            logits = fit.step(t, head_norm)
            bad = ~torch.isfinite(fit.heads).flatten(1).all(1)
            diverged = torch.where(bad & (diverged < 0), t, diverged)
            if (t + 1) % fit.log_every == 0:
                for p, v in enumerate(fit.train_losses(t, logits)):
                    history[p].append((t, {"train/loss": v}))
            if (t + 1) % fit.interval == 0 and has_val:
                for p, val in enumerate(
                    fit.evaluate(fit.pool, fit.y_pool, val_rows, head_norm, "val")
                ):
                    if len(val_rows[p]):
                        last_val[p] = val
                        history[p].append((t, val))
    test_rows = [torch.arange(len(fit.test), device=fit.device)] * len(points)
    results = []
    for p, tst in enumerate(fit.evaluate(fit.test, fit.y_test, test_rows, head_norm, "test")):
        tst["test/n_test"] = float(len(fit.test))
        correct = tst.pop("correct")
        history[p].append((fit.steps, tst))
        metrics = {**last_val[p], **tst, "global_steps": fit.steps, **fit.counts[p]}
        step = int(diverged[p])
        results.append(
            {
                "head_state": fit.head_state(p, head_norm),
                "metrics": metrics,
                "history": history[p],
                "diverged_at": None if step < 0 else step,
                "outcome_fields": (correct.numpy(), fit.y_test.cpu().numpy()),
            }
        )
    return results


def train_heads(cfg: DictConfig, datamodules: list, features: CachedFeatures) -> list[dict]:
    """The heads of the points of ``datamodules``, trained together (``fit_linear_heads``)."""
    cached = [CachedFeatureDataModule(dm, features) for dm in datamodules]
    labels = (cached[0].labels("pool"), cached[0].labels("test"))
    return fit_linear_heads(
        cached,
        features,
        labels,
        cfg,
        instantiate(cfg.optimizer),
        head_norm=bool(cfg.peft.get("head_norm", True)),
    )


#: what the configs of a grid's candidates must share to train as one batched computation
_SHARED_KEYS = (
    "trainer.max_steps",
    "trainer.val_check_interval",
    "trainer.log_every_n_steps",
    "trainer.deterministic",
    "scheduler",
    "peft.head_norm",
    "optimizer._target_",
)


def grid_shares_computation(cfgs: list[DictConfig], own: tuple[str, ...] = ()) -> bool:
    """Whether the candidates' configs differ only in what each head's own optimizer holds
    (``optimizer``'s lr, weight decay, ...) and the keys ``own`` (what the engine keeps per
    point), so their heads can train as one computation."""
    keys = [k for k in _SHARED_KEYS if k not in own]
    return all(OmegaConf.select(c, k) == OmegaConf.select(cfgs[0], k) for c in cfgs for k in keys)


def train_heads_grid(
    groups: list[tuple[DictConfig, list]], features: CachedFeatures
) -> list[list[dict]]:
    """The heads of several candidates' points, trained as one computation: ``groups`` holds
    each candidate's config and datamodules; each candidate's heads step with an optimizer built
    from its own config (``grid_shares_computation`` must hold). Per group, its points' heads."""
    cached = [CachedFeatureDataModule(dm, features) for _, dms in groups for dm in dms]
    labels = (cached[0].labels("pool"), cached[0].labels("test"))
    optimizers, start = [], 0
    for cfg, dms in groups:
        optimizers.append((instantiate(cfg.optimizer), slice(start, start + len(dms))))
        start += len(dms)
    cfg = groups[0][0]
    heads = fit_linear_heads(
        cached, features, labels, cfg, optimizers, bool(cfg.peft.get("head_norm", True))
    )
    return [heads[rows] for _, rows in optimizers]


class BatchedHeadsEngine(Engine):
    """A linear probe on cached whole-backbone features: every point's head (and every
    candidate's, when the tune grid shares the computation) trained as one computation."""

    name, generality = "batched_heads", 3
    fits_curve = shares_module = work_by_steps = True

    def fit(self, curve: CurveFit) -> dict[int, Any]:
        groups = curve.groups()
        curve.announce(f"{sum(map(len, groups.values()))} points in one {self.name} fit")
        cfgs = [curve.group_cfg(key, idx) for key, idx in groups.items()]
        if len(groups) > 1 and grid_shares_computation(cfgs):
            return _grid_heads(curve, cfgs, list(groups.values()))
        return fit_groups(curve, self.name, train_heads)

    def run(self, job: PointJob, fitted: Any = None) -> PointResult:
        """Load the point's head (trained with the other points of its curve) and report it."""
        if isinstance(fitted, Exception):
            raise RuntimeError(f"the batched heads of the curve failed: {fitted}") from fitted
        if fitted["diverged_at"] is not None:
            raise Diverged(fitted["diverged_at"])
        job.module.head.load_state_dict(fitted["head_state"])
        return finish_fitted(job, fitted)


def _grid_heads(curve: CurveFit, cfgs: list, groups: list[list[int]]) -> dict[int, Any]:
    """The heads of every candidate of a tuned curve, trained as one batched computation."""
    dms = [[curve.points[i].datamodule for i in idx] for idx in groups]
    try:
        fitted = train_heads_grid(list(zip(cfgs, dms, strict=True)), curve.features)
    except Exception as e:
        log.warning("the batched fit of the tune grid failed: %s: %s", type(e).__name__, e)
        fitted = [[e] * len(idx) for idx in groups]
    return {
        i: h for idx, hs in zip(groups, fitted, strict=True) for i, h in zip(idx, hs, strict=True)
    }


def finish_fitted(job: PointJob, fitted: dict[str, Any]) -> PointResult:
    """Report a point trained inside a batched fit (its tensors already loaded into
    ``job.module``): its counts, its logged history, checkpoints and test outcomes."""
    job.module.n_train_seen = fitted["metrics"]["n_train_seen"]
    job.module.train_samples_per_epoch = fitted["metrics"]["per_epoch"]
    replay_logs(job.loggers, fitted["history"])
    result = finish_point(job, fitted["metrics"])
    correct, labels = fitted["outcome_fields"]
    outcomes = outcome_fields(correct, labels, result.n_test)
    result.test_correct, result.test_set = outcomes["test_correct"], outcomes["test_set"]
    return result
