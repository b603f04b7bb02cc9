"""Converged linear probes (``peft.solver=lbfgs|ridge``): checked against scikit-learn's solvers on
the same standardised features, their λ selection, and their records and adapters end to end."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, Ridge

from caulk.backbones import create_backbone
from caulk.cache.data import CachedFeatureDataModule
from caulk.data import build_datamodule
from caulk.engines import solvers
from caulk.errors import CaulkConfigError
from caulk.peft import load_adapter
from caulk.plan import make_plan, validate_config
from caulk.run.curve import curve_features
from caulk.train import train_curve
from tests.conftest import compose_cfg

NS, SEEDS = [10, 40, 160, 640], [0, 1]
#: a grid of 13 λ that keeps scikit-learn's side of the comparison fast (weak λ iterate longest)
LAMBDAS = np.logspace(-4, 2, 13).tolist()
SOLVER = ["peft.solver=lbfgs", f"peft.lambdas={LAMBDAS}", "peft.tol=1e-4"]


@pytest.fixture(scope="module")
def digits():
    """The offline default's cached features (digits, random-init vit_pico) and its curve's
    datamodules (curve.n=NS x SEEDS, default validation split)."""
    cfg = compose_cfg([*SOLVER, f"curve.n={NS}", f"curve.seeds={SEEDS}", "cache.disk=false"])
    plan = make_plan(cfg)
    _, features = curve_features(plan)
    dms = [p.datamodule for p in plan.points]
    cached = CachedFeatureDataModule(dms[0], features)
    return cfg, dms, features, cached.labels("pool"), cached.labels("test")


def _standardised(pool, train_idx, *parts):
    x = pool.double()
    stats = solvers.standardizer(x[train_idx], True)
    return [solvers.standardize(x[p], stats).numpy() for p in parts]


def _objective(x, y, theta, lam) -> float:
    rows = solvers.Rows(
        torch.as_tensor(x)[None], torch.as_tensor(y)[None], torch.full((1, len(y)), 1 / len(y))
    )
    f, _ = solvers.objective(rows, torch.as_tensor(theta)[None], torch.tensor([lam]))
    return float(f)


@pytest.mark.parametrize("lam", [1e-3, 1e-1])
def test_lbfgs_reaches_sklearns_objective(digits, lam):
    _, dms, features, y_pool, _ = digits
    dm = dms[4]  # n=160
    (x,) = _standardised(features.pool, dm.train_idx, dm.train_idx)
    y = y_pool[dm.train_idx].numpy()
    rows = solvers.Rows(
        torch.as_tensor(x)[None], torch.as_tensor(y)[None], torch.full((1, len(y)), 1 / len(y))
    )
    theta, iters = solvers.lbfgs(
        rows,
        torch.zeros(1, 10, x.shape[1] + 1, dtype=torch.float64),
        torch.tensor([lam]),
        1e-9,
        5000,
    )
    ref = LogisticRegression(C=1 / (lam * len(y)), tol=1e-12, max_iter=100_000).fit(x, y)
    ref_theta = np.concatenate([ref.coef_, ref.intercept_[:, None]], 1)
    ours, theirs = _objective(x, y, theta[0].numpy(), lam), _objective(x, y, ref_theta, lam)
    assert int(iters[0]) > 0
    assert ours <= theirs * (1 + 1e-4)
    assert abs(ours - theirs) / theirs <= 1e-4


def test_grouped_rows_give_each_problem_its_own_cross_entropy_and_gradient(digits):
    """Problems of different n in groups of equal length: value and gradient of each equal
    torch's cross-entropy + λ/2·||W||² and its autograd gradient on that problem's rows alone."""
    _, dms, features, y_pool, _ = digits
    pool = features.pool.double()
    idx = [torch.as_tensor(dm.train_idx) for dm in dms[:6]]  # n = 10, 10, 40, 40, 160, 160
    stats = [solvers.standardizer(pool[i], True) for i in idx]
    rows = solvers.grouped_rows(pool, y_pool, idx, stats)
    assert len(rows.groups) == 3 and len(rows) == 6
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(6, 10, pool.shape[1] + 1, generator=gen, dtype=torch.float64)
    lam = torch.logspace(-3, 0, 6, dtype=torch.float64)
    f, g = rows.objective(theta, lam)
    for p in range(6):
        head = theta[p].clone().requires_grad_(True)
        x = solvers.standardize(pool[idx[p]], stats[p])
        loss = torch.nn.functional.cross_entropy(x @ head[:, :-1].T + head[:, -1], y_pool[idx[p]])
        loss = loss + 0.5 * lam[p] * (head[:, :-1] ** 2).sum()
        loss.backward()
        torch.testing.assert_close(f[p], loss.detach())
        torch.testing.assert_close(g[p], head.grad)
    kept = torch.tensor([False, True, True, False, False, True])
    f_kept, _ = rows.keep(kept).objective(theta[kept], lam[kept])
    torch.testing.assert_close(f_kept, f[kept])


@pytest.mark.parametrize("index", [0, 6])  # n=10 < D (eigh of XXᵀ), n=640 >= D (of XᵀX)
def test_ridge_matches_sklearns_ridge(digits, index):
    _, dms, features, y_pool, _ = digits
    dm = dms[index]
    (x,) = _standardised(features.pool, dm.train_idx, dm.train_idx)
    y = y_pool[dm.train_idx]
    rows = solvers.Rows(torch.as_tensor(x)[None], y[None], torch.full((1, len(y)), 1 / len(y)))
    lambdas = np.array([1e-2, 1e-4])
    heads = solvers.ridge_path(rows, lambdas, 10)  # (L, 1, K, D+1)
    targets = 2.0 * np.eye(10)[y.numpy()] - 1.0
    for lam, head in zip(lambdas, heads[:, 0], strict=True):
        ref = Ridge(alpha=lam * len(y)).fit(x, targets)
        np.testing.assert_allclose(head[:, :-1].numpy(), ref.coef_, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(head[:, -1].numpy(), ref.intercept_, rtol=1e-6, atol=1e-8)


def _sklearn_grid(dm, features, y_pool, y_test, lambdas, tol):
    """The per-point scikit-learn grid search: same λ, same standardisation, same selection."""
    x_tr, x_val = _standardised(features.pool, dm.train_idx, dm.train_idx, dm.val_idx)
    stats = solvers.standardizer(features.pool.double()[dm.train_idx], True)
    x_te = solvers.standardize(features.test.double(), stats).numpy()
    y_tr, y_val = y_pool[dm.train_idx].numpy(), y_pool[dm.val_idx].numpy()
    models = [
        LogisticRegression(C=1 / (lam * len(y_tr)), tol=tol, max_iter=1000).fit(x_tr, y_tr)
        for lam in lambdas
    ]
    val = [float((m.predict(x_val) != y_val).mean()) for m in models]
    j = solvers.select_lambda(lambdas, val)
    return lambdas[j], float((models[j].predict(x_te) != y_test.numpy()).mean())


def _test_error(head, features, y_test) -> float:
    state = head["head_state"]
    x = solvers.standardize(features.test, (state["0.running_mean"], state["0.running_var"]))
    logits = x @ state["1.weight"].T + state["1.bias"]
    return float((logits.argmax(1) != y_test).float().mean())


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_selected_test_errors_match_a_sklearn_grid_search(digits):
    cfg, dms, features, y_pool, y_test = digits
    heads = solvers.solve_points(cfg, dms, features)
    for dm, head in zip(dms, heads, strict=True):
        lam, err = _sklearn_grid(dm, features, y_pool, y_test, LAMBDAS, 1e-4)
        assert abs(_test_error(head, features, y_test) - err) <= 0.02, (dm.n, dm.seed, lam, head)
        assert len(head["candidates"]) == len(LAMBDAS) and head["n"] == dm.n


def test_selection_takes_the_lowest_validation_error_and_the_larger_lambda_on_ties():
    lambdas = [1e-3, 1e-2, 1e-1, 1.0]
    assert solvers.select_lambda(lambdas, [0.3, 0.1, 0.2, 0.4]) == 1  # the planted best
    assert solvers.select_lambda(lambdas, [0.1, 0.2, 0.1, 0.3]) == 2  # tie: the larger λ
    assert solvers.select_lambda(lambdas[::-1], [0.3, 0.1, 0.2, 0.1]) == 1  # order-free


def test_the_solver_selects_a_planted_best_lambda(digits):
    """A grid where one λ is sensible and the others crush the head to its bias (huge λ)."""
    cfg, dms, features, *_ = digits
    cfg = copy.deepcopy(cfg)
    cfg.peft.lambdas = [1e6, 1e-2, 1e5]
    for solver in ("lbfgs", "ridge"):
        cfg.peft.solver = solver
        heads = solvers.solve_points(cfg, dms[-2:], features)
        assert all(h["selected"]["lambda"] == 1e-2 for h in heads), solver
        assert all(h["selected"]["selection"] == "holdout" for h in heads), solver
        assert all(h["selected"]["lambda_at_edge"] == "low" for h in heads), solver
        assert all([c["lambda"] for c in h["candidates"]] == [1e-2, 1e5, 1e6] for h in heads)


def test_every_lambda_at_once_reaches_the_warm_paths_solutions(digits):
    """``peft.lambda_path=parallel`` (every λ of every point one problem, from zero) and ``warm``
    (λ after λ, warm-started) solve the same problems: each head's objective within 1e-4
    relative, the same λ chosen at every point, the iterations counted per point."""
    cfg, dms, features, y_pool, _ = digits
    cfg = copy.deepcopy(cfg)
    cfg.peft.tol = 1e-7
    heads = {}
    for mode in ("warm", "parallel"):
        cfg.peft.lambda_path = mode
        heads[mode] = solvers.solve_points(cfg, dms, features)
    for warm, parallel in zip(heads["warm"], heads["parallel"], strict=True):
        assert parallel["selected"] == warm["selected"]
        assert parallel["iterations"] > 0 and warm["iterations"] > 0
    pool = features.pool.double()
    for dm, warm, parallel in zip(dms, heads["warm"], heads["parallel"], strict=True):
        lam = warm["selected"]["lambda"]
        (x,) = _standardised(pool, dm.train_idx, dm.train_idx)
        y = y_pool[dm.train_idx].numpy()
        values = [
            _objective(x, y, torch.cat([h["1.weight"], h["1.bias"][:, None]], 1).double(), lam)
            for h in (warm["head_state"], parallel["head_state"])
        ]
        assert abs(values[1] - values[0]) <= 1e-4 * values[0], (dm.n, dm.seed, values)


def test_lambda_path_auto_is_parallel_on_a_gpu_only():
    peft = {"lambda_path": "auto"}
    assert solvers.parallel_lambdas(peft, torch.device("cuda"))
    assert not solvers.parallel_lambdas(peft, torch.device("cpu"))
    assert solvers.parallel_lambdas({"lambda_path": "parallel"}, torch.device("cpu"))
    assert not solvers.parallel_lambdas({"lambda_path": "warm"}, torch.device("cuda"))


def test_permuting_the_test_labels_leaves_the_choice_unchanged(digits):
    cfg, dms, features, *_ = digits
    cfg = copy.deepcopy(cfg)
    cfg.peft.solver = "ridge"
    before = [h["selected"] for h in solvers.solve_points(cfg, dms, features)]
    splits = dms[0].splits
    saved = splits.test_labels.copy()
    try:
        splits.test_labels[:] = np.random.default_rng(0).permutation(saved)
        assert not np.array_equal(splits.test_labels, saved)
        shuffled = copy.copy(features)
        shuffled.test = features.test[torch.randperm(len(features.test))]
        after = [h["selected"] for h in solvers.solve_points(cfg, dms, shuffled)]
    finally:
        splits.test_labels[:] = saved
    assert after == before


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["peft.solver=newton"], "peft.solver must be sgd or lbfgs or ridge"),
        (["peft.solver=lbfgs", "peft.lambdas=[]"], "peft.lambdas must be a non-empty list"),
        (["peft.solver=lbfgs", "peft.lambdas=[0.1,-1]"], "peft.lambdas must be a non-empty"),
        (["peft.solver=lbfgs", "peft.tol=0"], "peft.tol must be a positive number"),
        (["peft.lambda_path=all"], "peft.lambda_path must be warm or parallel or auto"),
    ],
)
def test_bad_solver_settings_are_one_line_errors(overrides, message):
    with pytest.raises(CaulkConfigError) as e:
        validate_config(compose_cfg(overrides))
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.val_size=0"], "has none (data.val_size=0?)"),
        (["cache.features=false"], "peft.solver=lbfgs needs cached features"),
    ],
)
def test_a_solver_without_validation_rows_or_curve_features_fails_before_any_work(
    tmp_path, overrides, message
):
    cfg = compose_cfg(["peft.solver=lbfgs", "data.n=20", *overrides], tmp_path / "run")
    with pytest.raises(CaulkConfigError) as e:
        train_curve(cfg)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "run" / "record.json").exists()


def _reloaded_test_error(record: dict) -> tuple[float, float]:
    """Error and loss of the point's adapter, reloaded onto a fresh backbone, on the test images."""
    cfg = compose_cfg([f"data.n={record['n']}"])
    backbone = create_backbone(cfg.model)
    module = load_adapter(record["adapter_file"], backbone.model)
    dm = build_datamodule(cfg.data, record["seed"])
    dm.set_input_transform(backbone.data_config)
    wrong = total = loss = 0.0
    with torch.no_grad():
        for x, y, _ in dm.test_dataloader():
            logits = module(x)
            wrong += int((logits.argmax(1) != y).sum())
            loss += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
            total += len(y)
    return wrong / total, loss / total


@pytest.mark.parametrize("solver", ["lbfgs", "ridge"])
def test_a_solver_curve_records_its_choice_and_its_adapters_reproduce_it(tmp_path, solver):
    cfg = compose_cfg(
        [*SOLVER, f"peft.solver={solver}", "curve.n=[20,80]", "curve.seeds=[0,1]", "logger=csv"],
        tmp_path / "run",
    )
    records = train_curve(cfg)
    assert [r["status"] for r in records] == ["ok"] * 4
    for r in records:
        assert r["train_loop"] == "solver" and r["solver"] == solver
        assert [c["lambda"] for c in r["candidates"]] == sorted(LAMBDAS)
        best = min(c["val_error"] for c in r["candidates"])
        assert r["selected"]["lambda"] == max(
            c["lambda"] for c in r["candidates"] if c["val_error"] == best
        )
        assert r["val_error"] == best and r["n_train_seen"] == r["n"]
        error, loss = _reloaded_test_error(r)
        assert error == pytest.approx(r["test_error"], abs=1e-6)
        assert loss == pytest.approx(r["test_loss"], rel=1e-4)
