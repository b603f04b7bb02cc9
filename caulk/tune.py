"""Per-point hyper-parameter selection (the ``tune`` config section): candidates, checks, folds,
and the selection rule. ``caulk.run.tuned`` trains the candidates and writes the points.

``tune.policy: grid`` trains, for every (model, peft, n, seed) point, each candidate of
``tune.grid`` (a mapping of config keys to lists of values; the candidates are their product, in
the order written) and keeps the candidate with the lowest validation error; ties go to the
earlier candidate. Only validation errors enter the choice: the test split is read to report the
chosen candidate, never to choose it.

``tune.validation``:
- ``holdout``: each candidate trains on the point's n examples and is validated on the fixed
  validation split outside them (``data.val_size``); the point reports the chosen candidate.
- ``within_n``: each candidate is validated by k-fold cross-validation inside the n examples
  (scikit-learn's ``KFold``, shuffled with the point's seed; or one ``ShuffleSplit`` holding out
  ``tune.fraction`` of them); its error is the pooled error over the folds. The chosen candidate
  is then retrained on all n, with no validation data at all.

A ridge probe (``peft.solver=ridge``) under ``within_n`` chooses its λ by exact leave-one-out
inside the n examples it trains on, whether or not a grid is tuned (``tune.policy: none`` included;
``caulk.engines.solvers``); ``peft.solver=lbfgs`` has no such selection and is refused.
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict
from sklearn.model_selection import KFold, ShuffleSplit

from caulk.config import LINEAR_SOLVERS, is_number
from caulk.errors import CaulkConfigError

#: config roots a candidate may not change: they define the point, its data, or what its curve
#: shares (the backbone, the cached features, where it writes)
FIXED_ROOTS = (
    "model",
    "data",
    "curve",
    "tune",
    "paths",
    "hydra",
    "logger",
    "seed",
    "cache",
    "source_task",
    "task_name",
    "callbacks",
    "compile",
)
#: keys under ``peft`` that choose the method or its engine, not a hyper-parameter of it
FIXED_PEFT_KEYS = ("peft.name", "peft.solver", "peft.lambdas")
#: the linear probe's solvers that run under ``within_n``: sgd (no λ), ridge (λ by leave-one-out)
WITHIN_N_SOLVERS = (LINEAR_SOLVERS[0], "ridge")
#: each fold of ``within_n`` validates on at least this many examples
MIN_FOLD_VAL = 2
_ABSENT = object()


@dataclass(frozen=True)
class Candidate:
    """One candidate of a grid: its position in the grid's order and its values."""

    index: int
    values: dict[str, Any]


def is_tuned(cfg: Any) -> bool:
    """Whether ``cfg`` selects hyper-parameters per point (``tune.policy: grid``)."""
    return str((cfg.get("tune") or {}).get("policy", "none")) == "grid"


def validation_policy(cfg: Any) -> str:
    """``holdout`` or ``within_n``."""
    return str(cfg.tune.get("validation", "holdout"))


def grid_of(cfg: Any) -> dict[str, list[Any]]:
    """The grid as plain Python: ``tune.grid``, or ``peft.lr`` x {0.1, 1, 10} when it is null."""
    grid = cfg.tune.get("grid")
    if grid is None:
        lr = float(cfg.peft.lr)
        return {"peft.lr": [lr / 10, lr, lr * 10]}
    if not OmegaConf.is_dict(grid):
        raise CaulkConfigError(
            f"tune.grid must be a mapping of config keys to lists, e.g. "
            f"{{peft.lr:[1e-3,1e-2]}}, got {OmegaConf.to_container(grid) if OmegaConf.is_config(grid) else grid!r}"
        )
    return {str(k): _values(str(k), v) for k, v in grid.items()}


def _values(key: str, values: Any) -> list[Any]:
    if not OmegaConf.is_list(values) or len(values) == 0:
        raise CaulkConfigError(
            f"tune.grid.{key} must be a non-empty list of values, got {values!r}"
        )
    return list(OmegaConf.to_container(values, resolve=True))


def candidates(cfg: Any) -> list[Candidate]:
    """The candidates of ``cfg``'s grid: the product of its lists, in the order written."""
    grid = grid_of(cfg)
    keys = list(grid)
    return [
        Candidate(i, dict(zip(keys, combo, strict=True)))
        for i, combo in enumerate(itertools.product(*grid.values()))
    ]


def candidate_cfg(cfg: DictConfig, candidate: Candidate) -> DictConfig:
    """A copy of ``cfg`` with the candidate's values set."""
    out = cfg.copy()
    with open_dict(out):
        for key, value in candidate.values.items():
            OmegaConf.update(out, key, copy.deepcopy(value), merge=False)
    return out


def _check_key(cfg: DictConfig, key: str) -> None:
    root = key.split(".", 1)[0]
    if root in FIXED_ROOTS or key in FIXED_PEFT_KEYS:
        raise CaulkConfigError(
            f"tune.grid key {key!r} cannot be tuned per point (it defines the point, its data or "
            f"what its curve shares); sweep it with -m instead"
        )
    if OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT:
        raise CaulkConfigError(f"tune.grid key {key!r} is not a key of the config")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if is_number(value):
        return "number"
    return type(value).__name__


def _check_value_kind(key: str, base: Any, value: Any) -> None:
    if base is None or value is None:
        return
    if _kind(base) != _kind(value):
        raise CaulkConfigError(
            f"tune.grid.{key} value {value!r} is a {_kind(value)}, but {key} is a {_kind(base)} "
            f"({base!r})"
        )


def check_tune(cfg: DictConfig, ns: list[int], validate_candidate) -> None:
    """Check ``cfg``'s tune section before any work; ``ns`` are the points' sizes and
    ``validate_candidate(cfg)`` checks a candidate's whole config. One-line CaulkConfigError."""
    if not is_tuned(cfg):
        _check_untuned_validation(cfg)
        return
    grid = grid_of(cfg)
    if not grid:
        raise CaulkConfigError(
            "tune.grid is empty: give at least one key, e.g. {peft.lr:[1e-3,1e-2]}"
        )
    for key, values in grid.items():
        _check_key(cfg, key)
        base = OmegaConf.select(cfg, key)
        base = OmegaConf.to_container(base) if OmegaConf.is_config(base) else base
        for value in values:
            _check_value_kind(key, base, value)
    for cand in candidates(cfg):
        try:
            validate_candidate(candidate_cfg(cfg, cand))
        except CaulkConfigError as e:
            raise CaulkConfigError(f"tune.grid candidate {cand.values}: {e}") from None
    if validation_policy(cfg) == "within_n":
        _check_within_n(cfg, ns)


def _check_untuned_validation(cfg: DictConfig) -> None:
    """Without a grid, ``within_n`` only applies to a ridge probe's λ: refuse it elsewhere rather
    than let the setting silently do nothing."""
    if validation_policy(cfg) != "within_n":
        return
    solver = str(cfg.peft.get("solver", "sgd")) if cfg.peft.name == "linear" else None
    if solver in (None, "sgd"):  # lbfgs: caulk.engines.solvers refuses it in its own words
        method = f"peft.solver={solver}" if solver else f"peft={cfg.peft.name}"
        raise CaulkConfigError(
            f"tune.validation=within_n with tune=none and {method} selects nothing: only a ridge "
            f"probe chooses λ without a grid; add tune=grid or use peft.solver=ridge"
        )


def _check_within_n(cfg: DictConfig, ns: list[int]) -> None:
    solver = str(cfg.peft.get("solver", "sgd")) if cfg.peft.name == "linear" else "sgd"
    if solver not in WITHIN_N_SOLVERS:
        raise CaulkConfigError(
            f"tune.validation=within_n with peft.solver={solver}: the solver chooses λ on "
            f"validation rows outside n; use tune.validation=holdout (or peft.solver=sgd|ridge)"
        )
    if (cfg.get("budget") or {}).get("early_stop", {}).get("enabled"):
        raise CaulkConfigError(
            "tune.validation=within_n with budget.early_stop: the retrain on all n has no "
            "validation data to stop on; turn one of them off"
        )
    smallest = min(ns)
    fraction, folds = cfg.tune.get("fraction"), int(cfg.tune.get("folds", 3))
    val = math.floor(smallest * fraction) if fraction is not None else smallest // folds
    if val < MIN_FOLD_VAL or smallest - val < 1:
        how = f"tune.fraction={fraction}" if fraction is not None else f"tune.folds={folds}"
        raise CaulkConfigError(
            f"tune.validation=within_n: n={smallest} is too small for {how} (each fold needs >= "
            f"{MIN_FOLD_VAL} validation and >= 1 training examples); use larger n or fewer folds"
        )


def within_n_splits(n: int, cfg: Any, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (train, validation) positions in ``range(n)`` of each within-n fold."""
    fraction = cfg.tune.get("fraction")
    if fraction is not None:
        splitter = ShuffleSplit(n_splits=1, test_size=float(fraction), random_state=seed)
    else:
        splitter = KFold(n_splits=int(cfg.tune.get("folds", 3)), shuffle=True, random_state=seed)
    return [(np.sort(tr), np.sort(va)) for tr, va in splitter.split(np.arange(n))]


def select(val_errors: list[float | None]) -> int | None:
    """The index of the lowest finite validation error (ties: the earliest); None if none."""
    best = None
    for i, err in enumerate(val_errors):
        if err is None or not math.isfinite(err):
            continue
        if best is None or err < val_errors[best]:
            best = i
    return best


def pooled_error(errors: list[float | None], sizes: list[int]) -> float | None:
    """The error over all folds' validation examples (None when a fold has no error)."""
    if any(e is None or not math.isfinite(e) for e in errors):
        return None
    return float(sum(e * s for e, s in zip(errors, sizes, strict=True)) / sum(sizes))
