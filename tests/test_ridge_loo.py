"""Exact leave-one-out λ selection of the ridge probe (``tune.validation=within_n``): every λ's
LOO predictions and errors checked against refits without each example (scikit-learn's ``Ridge``),
the choice, the fixed λ where LOO cannot choose, the grid-edge flag, and the records end to end."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge

from caulk.cache.data import CachedFeatureDataModule
from caulk.engines import solvers
from caulk.errors import CaulkConfigError
from caulk.plan import make_plan
from caulk.run.curve import curve_features
from caulk.run.record import record_row
from caulk.train import train_curve
from tests.conftest import compose_cfg

NS = [10, 40, 80]  # digits has 10 classes: n=10 is one example per class; D = 64
LOO = ["peft.solver=ridge", "tune.validation=within_n"]


@pytest.fixture(scope="module")
def digits():
    """The offline default's cached features (digits, random-init vit_pico, D=64), the curve's
    datamodules (curve.n=NS, seed 0) and the pool's labels."""
    cfg = compose_cfg([*LOO, f"curve.n={NS}", "curve.seeds=[0]", "cache.disk=false"])
    plan = make_plan(cfg)
    _, features = curve_features(plan)
    dms = [p.datamodule for p in plan.points]
    return cfg, dms, features, CachedFeatureDataModule(dms[0], features).labels("pool")


@pytest.fixture(scope="module")
def refits(digits):
    """Per point index: (its λ grid, the brute-force ``_brute_force`` of its training rows); the
    whole default grid at n=40, every third λ of it at n=80 (refits are the test's cost)."""
    cfg, dms, features, y_pool = digits
    grid = np.sort(solvers.lambda_grid(cfg.peft))
    out = {}
    for index, lambdas in ((1, grid), (2, grid[::3])):
        x, labels = _train_rows(features, dms[index], y_pool)
        out[index] = lambdas, _brute_force(x.numpy(), labels.numpy(), lambdas, 10)
    return out


def _train_rows(features, dm, y_pool):
    """The point's standardised training rows (float64) and labels, as the solver sees them."""
    x = features.pool.double()[dm.train_idx]
    return solvers.standardize(x, solvers.standardizer(x, True)), y_pool[dm.train_idx]


def _brute_force(x: np.ndarray, labels: np.ndarray, lambdas, n_cls: int):
    """(L, n, K) predictions of each row by ``Ridge(alpha=λ·n)`` fitted without it (n: all the
    point's rows, the penalty of the full problem), and (L,) the LOO classification errors."""
    n, targets = len(labels), 2.0 * np.eye(n_cls)[labels] - 1.0
    preds = np.empty((len(lambdas), n, n_cls))
    for li, lam in enumerate(lambdas):
        for i in range(n):
            rest = np.arange(n) != i
            fit = Ridge(alpha=lam * n).fit(x[rest], targets[rest])
            preds[li, i] = fit.predict(x[i : i + 1])[0]
    return preds, (preds.argmax(2) != labels[None]).mean(1)


def _lowest_error_larger_lambda(lambdas, errors) -> float:
    best = min(errors)
    return max(lam for lam, e in zip(lambdas, errors, strict=True) if e == best)


@pytest.mark.parametrize("index", [1, 2])  # n=40 < D (dual), n=80 >= D (primal)
def test_loo_predictions_and_errors_equal_refits_without_each_example(digits, refits, index):
    _, dms, features, y_pool = digits
    lambdas, (theirs, errors) = refits[index]
    x, labels = _train_rows(features, dms[index], y_pool)
    ours = solvers.ridge_loo_predictions(x, labels, lambdas, 10).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
    rows = solvers.Rows(x[None], labels[None], torch.full((1, len(labels)), 1 / len(labels)))
    _, loo_errors = solvers.ridge_path_loo(rows, lambdas, 10)
    assert loo_errors[:, 0].tolist() == errors.tolist()
    assert len(set(errors.tolist())) > 1  # the grid's λ differ: the check is not vacuous


@pytest.mark.parametrize("index", [1, 2])
def test_the_solver_selects_the_brute_force_argmin_and_records_every_loo_error(
    digits, refits, index
):
    cfg, dms, features, _ = digits
    lambdas, (_, errors) = refits[index]
    cfg = copy.deepcopy(cfg)
    cfg.peft.lambdas = lambdas.tolist()
    (head,) = solvers.solve_points(cfg, dms[index : index + 1], features)
    assert [c["lambda"] for c in head["candidates"]] == lambdas.tolist()
    assert [c["loo_error"] for c in head["candidates"]] == errors.tolist()
    assert head["selected"]["selection"] == "loo"
    assert head["selected"]["lambda"] == _lowest_error_larger_lambda(lambdas, errors)


def test_no_validation_row_enters_the_loo_choice(digits):
    """The same heads and choices whether the points have their 150 validation rows or none."""
    cfg, dms, features, _ = digits
    with_val = solvers.solve_points(cfg, dms, features)
    bare = [copy.copy(dm) for dm in dms]
    for dm in bare:
        dm.val_idx = np.array([], dtype=int)
    without = solvers.solve_points(cfg, bare, features)
    for a, b in zip(with_val, without, strict=True):
        assert a["selected"] == b["selected"] and a["candidates"] == b["candidates"]
        assert b["val_error"] is None and a["val_error"] is not None  # reported, never chosen on


def test_one_example_per_class_uses_the_grids_middle_lambda(digits):
    cfg, dms, features, _ = digits
    (head,) = solvers.solve_points(cfg, dms[:1], features)  # n=10: one example per class
    lambdas = sorted(cfg.peft.lambdas)
    assert head["n"] == 10
    assert head["selected"]["selection"] == "fixed" and "single" in head["selected"]["reason"]
    assert head["selected"]["lambda"] == lambdas[len(lambdas) // 2]
    assert head["selected"]["lambda_at_edge"] is None
    assert all(c["loo_error"] is None for c in head["candidates"])


def test_loo_needs_two_examples_of_every_class_present():
    assert solvers.loo_fallback_reason(np.array([0, 1, 2])) is not None  # n == classes
    assert solvers.loo_fallback_reason(np.array([0, 0, 1, 1, 2])) is not None  # one singleton
    assert solvers.loo_fallback_reason(np.array([0, 0, 2, 2, 2])) is None  # class 1 absent: fine
    assert solvers.fixed_lambda_index([1e-3, 1e-1, 1e-2]) == 2  # the middle in λ order
    assert solvers.fixed_lambda_index([1.0, 1e-2, 1e-1, 1e-3]) == 2  # even: the larger middle


def test_a_lambda_at_the_grids_edge_is_flagged():
    lambdas = [1e-2, 1e-4, 1.0, 1e-3]
    edges = [solvers.lambda_at_edge(lambdas, i) for i in range(4)]
    assert edges == [None, "low", "high", None]
    assert solvers.lambda_at_edge([0.1], 0) is None  # one λ: no grid to be at the edge of
    _, sel = solvers.choose_lambda(np.array(lambdas), np.array([0.3, 0.1, 0.2, 0.2]), "holdout")
    assert sel == {"lambda": 1e-4, "selection": "holdout", "lambda_at_edge": "low"}


@pytest.mark.parametrize("policy", ["holdout", "within_n"])
def test_the_solver_flags_a_planted_best_lambda_at_the_edge(digits, policy):
    """1e-2 is sensible, 1e5 and 1e6 crush the head to its bias: 1e-2 is chosen, the low end."""
    cfg, dms, features, _ = digits
    cfg = copy.deepcopy(cfg)
    cfg.peft.lambdas, cfg.tune.validation = [1e6, 1e-2, 1e5], policy
    for head in solvers.solve_points(cfg, dms[1:], features):
        assert head["selected"]["lambda"] == 1e-2 and head["selected"]["lambda_at_edge"] == "low"
        assert head["selected"]["selection"] == ("loo" if policy == "within_n" else "holdout")


def test_lbfgs_cannot_select_within_n(tmp_path):
    cfg = compose_cfg(["peft.solver=lbfgs", "tune.validation=within_n"], tmp_path / "run")
    with pytest.raises(CaulkConfigError, match="only ridge selects λ inside n") as e:
        train_curve(cfg)
    assert "\n" not in str(e.value) and not (tmp_path / "run" / "record.json").exists()


@pytest.mark.parametrize("val_size", [150, 0])
def test_a_within_n_ridge_curve_records_its_loo_choice(fast_cfg, val_size):
    cfg = fast_cfg(*LOO, "curve.n=[10,40]", "curve.seeds=[0]", f"data.val_size={val_size}")
    records = train_curve(cfg)
    assert [r["status"] for r in records] == ["ok", "ok"]
    fixed, loo = records
    assert fixed["selected"]["selection"] == "fixed" and loo["selected"]["selection"] == "loo"
    errors = [c["loo_error"] for c in loo["candidates"]]
    assert len(errors) == len(cfg.peft.lambdas) and all(0 <= e <= 1 for e in errors)
    assert loo["selected"]["lambda"] == _lowest_error_larger_lambda(
        [c["lambda"] for c in loo["candidates"]], errors
    )
    assert loo["n_val"] == val_size and (loo.get("val_error") is None) == (val_size == 0)
    row = record_row(loo)
    assert (
        row["selected.selection"] == "loo" and row["selected.lambda"] == loo["selected"]["lambda"]
    )


def test_a_tuned_within_n_ridge_point_keeps_the_grids_and_the_loo_choice(fast_cfg):
    grid = ["tune=grid", "tune.grid={peft.head_norm:[true,false]}", "tune.folds=2"]
    (rec,) = train_curve(fast_cfg(*LOO, *grid, "curve.n=[40]", "curve.seeds=[0]"))
    assert rec["status"] == "ok" and rec["tune"]["validation"] == "within_n"
    assert rec["selected"]["peft.head_norm"] in (True, False)
    assert rec["selected"]["selection"] == "loo" and rec["selected"]["lambda"] > 0
    assert [c["values"]["peft.head_norm"] for c in rec["candidates"]] == [True, False]
    assert all(0 <= c["val_error"] <= 1 for c in rec["candidates"])  # the folds inside n
