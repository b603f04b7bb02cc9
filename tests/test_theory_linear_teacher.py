"""Linear-teacher simulator: GD limit, closed forms, similarity and depth demonstrations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from caulk.errors import CaulkConfigError
from caulk.theory import linear_teacher, rates, solvers, teachers
from tests.conftest import CONF, REPO, cli_env


def theory_cfg(name: str, out, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=f"theory/{name}", overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return cfg


def run_lt(tmp_path, *overrides: str) -> dict[int, dict]:
    records = linear_teacher.run(theory_cfg("linear_teacher", tmp_path, *overrides))
    return {r["n"]: r for r in records}


def test_gd_reaches_the_closed_form_limit():
    rng = np.random.default_rng(3)
    trials, n, d = 8, 12, 30
    X = rng.standard_normal((trials, n, d))
    y = rng.standard_normal((trials, n))
    w_s = rng.standard_normal((trials, d))
    gd = solvers.gd_finetune(X, y, w_s)
    # The interpolant closest to w_S, by an independent route: minimise ‖w − w_S‖ s.t. Xw = y.
    for t in range(trials):
        kkt = np.block([[np.eye(d), X[t].T], [X[t], np.zeros((n, n))]])
        closest = np.linalg.solve(kkt, np.concatenate([w_s[t], y[t]]))[:d]
        np.testing.assert_allclose(gd.w[t], closest, atol=1e-8, rtol=0)
    assert gd.converged
    np.testing.assert_allclose(gd.w, solvers.closed_form_finetune(X, y, w_s), atol=1e-8, rtol=0)


def test_closed_forms_by_hand():
    assert teachers.isotropic_expected_risk(10, 40, 2.0, 0.0) == pytest.approx(1.5)
    assert teachers.isotropic_expected_risk(10, 40, 2.0, 1.0) == pytest.approx(1.5 + 10 / 29)
    assert teachers.isotropic_expected_risk(30, 10, 2.0, 1.0) == pytest.approx(10 / 19)
    assert teachers.isotropic_expected_risk(39, 40, 1.0, 1.0) is None
    assert teachers.isotropic_risk_law(10, 40).mean() == pytest.approx(0.75)
    lam = np.ones(40)
    assert teachers.similarity(np.full(40, 0.5), lam, 10) == pytest.approx(0.75**2 * 10)


@pytest.mark.parametrize(
    ("d", "ns", "sigma"),
    [(30, "[5,15,22]", 0.0), (40, "[10,30]", 0.5), (12, "[30]", 0.5)],
)
def test_simulation_matches_closed_form_within_3_se(tmp_path, d, ns, sigma):
    points = run_lt(tmp_path, f"d={d}", f"n={ns}", f"sigma={sigma}", "trials=400")
    for n, r in points.items():
        assert r["theory_kind"] == "exact"
        assert abs(r["excess_risk"] - r["theory"]) < 3 * r["excess_risk_se"], (n, r)
        assert r["gd_converged"] and r["gd_closed_form_max_abs_diff"] < 1e-8
        if sigma == 0:
            assert r["beta_law_ks_pvalue"] > 0.01
        assert (tmp_path / f"n{n}" / "record.json").is_file()


def test_similarity_orders_sample_complexity_not_euclidean_distance(tmp_path):
    common = ["d=60", "n=[5,10,20,30,40,50]", "covariance=spiked", "solver=closed_form"]
    top = run_lt(tmp_path / "top", *common, "source=top", "trials=100")
    tail = run_lt(tmp_path / "tail", *common, "source=tail", "trials=100")
    ns = sorted(top)
    assert all(top[n]["delta_sq"] == pytest.approx(tail[n]["delta_sq"]) for n in ns)
    # Same Euclidean distance; before fine-tuning the top source is far worse (ΔᵀΣΔ) ...
    assert top[5]["source_risk"] > 10 * tail[5]["source_risk"]
    # ... but it needs fewer samples: the curves cross, and the similarity measure, which
    # involves w_S, w_T and Σ, says which source is ahead at every n.
    for n in ns:
        top_better = top[n]["excess_risk"] < tail[n]["excess_risk"]
        assert top_better == (top[n]["similarity"] < tail[n]["similarity"]), n
    assert top[5]["excess_risk"] > tail[5]["excess_risk"]
    assert top[20]["excess_risk"] < tail[20]["excess_risk"]
    target = 0.05
    n_top = rates.sample_complexity(ns, [top[n]["excess_risk"] for n in ns], target)
    n_tail = rates.sample_complexity(ns, [tail[n]["excess_risk"] for n in ns], target)
    assert n_top is not None and n_tail is not None and n_tail >= 2 * n_top
    # The large-d approximation tracks the simulation at d = 60 once n ≥ 10.
    for curve in (top, tail):
        for n in ns[1:]:
            assert curve[n]["theory_asymptotic"] == pytest.approx(curve[n]["excess_risk"], rel=0.35)


def test_depth_makes_a_rescaled_source_cheap(tmp_path):
    common = ["d=40", "n=[10,20]", "delta_norm=0.5", "trials=30", "gd.tol=1e-8"]
    risk = {
        (depth, source): run_lt(
            tmp_path / f"{depth}{source}", *common, f"depth={depth}", f"source={source}"
        )
        for depth in (1, 3)
        for source in ("random", "parallel")
    }
    for n in (10, 20):
        # Depth 1: only ‖Δ‖ matters for Σ = I, both sources sit on the closed form.
        for source in ("random", "parallel"):
            r = risk[(1, source)][n]
            assert abs(r["excess_risk"] - r["theory"]) < 4 * r["excess_risk_se"] + 1e-12
        deep_parallel = risk[(3, "parallel")][n]
        assert deep_parallel["gd_converged"]
        # Depth 3: a source that is the target rescaled is learned far better than one at the
        # same distance in a random direction, and better than at depth 1.
        assert deep_parallel["excess_risk"] < 0.7 * risk[(3, "random")][n]["excess_risk"]
        assert deep_parallel["excess_risk"] < 0.5 * risk[(1, "parallel")][n]["excess_risk"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("covariance=banana", "unknown covariance 'banana'"),
        ("n=[10,0]", "n must be integers ≥ 1"),
        ("source=parallel", "source=parallel needs delta_norm < target_norm"),
        ("depth=2 solver=closed_form", "solver=closed_form exists only for depth=1"),
    ],
)
def test_bad_config_is_one_line_error_and_writes_nothing(tmp_path, override, message):
    out = tmp_path / "run"
    with pytest.raises(CaulkConfigError, match=message):
        linear_teacher.run(theory_cfg("linear_teacher", out, *override.split()))
    assert not out.exists()


def _theory_cli(tmp_path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """``python -m caulk.theory.linear_teacher ARGS`` from the repo root, logs under ``tmp_path``."""
    return subprocess.run(
        [sys.executable, "-m", "caulk.theory.linear_teacher", *args],
        cwd=REPO,
        env=cli_env(CAULK_ROOT=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cli_writes_records_and_rejects_bad_input(tmp_path):
    ok = _theory_cli(tmp_path, "d=20", "n=[5,10]", "trials=10")
    assert ok.returncode == 0, ok.stderr
    paths = sorted((tmp_path / "logs").rglob("record.json"))
    assert [p.parent.name for p in paths] == ["n10", "n5"]
    record = json.loads(paths[1].read_text())
    for key in (
        "kind",
        "n",
        "seed",
        "status",
        "d",
        "sigma",
        "trials",
        "excess_risk",
        "excess_risk_se",
        "theory",
        "covariance",
        "source",
        "depth",
    ):
        assert key in record
    assert record["kind"] == "linear_teacher" and record["status"] == "ok" and record["n"] == 5
    bad = _theory_cli(tmp_path, "covariance=banana")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "caulk: error: unknown covariance 'banana'; available: isotropic, spiked, power_law"
    ]
    assert len(list((tmp_path / "logs" / "theory_linear_teacher" / "runs").iterdir())) == 1


def test_a_sweeps_bad_job_is_rejected_and_the_others_still_run(tmp_path):
    """``-m sigma=0.5,nan,1``: the nan job is one line and leaves no dir; the two good jobs
    write their records; the sweep exits 2 naming the rejected job."""
    sweep = tmp_path / "sweep"
    args = ["-m", "sigma=0.5,nan,1", "d=10", "n=[5]", "trials=5", f"hydra.sweep.dir={sweep}"]
    res = _theory_cli(tmp_path, *args, timeout=180)
    assert res.returncode == 2, res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("caulk: error:")]
    assert errors == [
        "caulk: error: sigma must be a finite number, got nan",
        "caulk: error: 1 job(s) of the sweep rejected for bad input, the others ran: job 1 "
        "(sigma must be a finite number, got nan)",
    ]
    records = [json.loads(p.read_text()) for p in sorted(sweep.rglob("record.json"))]
    assert sorted(r["sigma"] for r in records) == [0.5, 1.0]
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == ["0", "2"]


def test_cli_bad_override_is_one_line(tmp_path):
    bad = _theory_cli(tmp_path, "sigmaa=1")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "caulk: error: bad override: Could not override 'sigmaa'. To append to your config use "
        "+sigmaa=1 (Key 'sigmaa' is not in struct)"
    ]
    assert not (tmp_path / "logs").exists()


def test_cli_rejects_nan_sigma_in_one_line(tmp_path):
    bad = _theory_cli(tmp_path, "sigma=nan")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "caulk: error: sigma must be a finite number, got nan"
    ]
    assert not list(tmp_path.rglob("record.json"))


@pytest.mark.slow
def test_cli_small_d_is_not_rejected_by_the_unused_spikes_default(tmp_path):
    args = ["d=4", "n=[2,3]", "trials=5"]
    ok = _theory_cli(tmp_path, *args)
    assert ok.returncode == 0, ok.stderr
    records = [json.loads(p.read_text()) for p in sorted(tmp_path.rglob("record.json"))]
    assert [(r["d"], r["n"], r["status"]) for r in records] == [(4, 2, "ok"), (4, 3, "ok")]
    spiked = _theory_cli(tmp_path, *args, "covariance=spiked")
    assert spiked.returncode == 2  # where the spikes are used, they must still fit in d
    assert spiked.stderr.strip().splitlines() == ["caulk: error: spikes must be in [1, 3], got 5"]


def test_caulk_analyze_fits_theory_records_by_their_curve_keys(tmp_path):
    """Theory sweeps go through the same analysis: groups from curve_keys, metric excess_risk."""
    from caulk.analyze import analyze

    out = tmp_path / "lt"
    run_lt(out, "solver=closed_form", "d=50", "n=[5,10,20,30,40]", "trials=50")
    res = analyze([out], replicates=0)
    assert res.summary["metric"] == "excess_risk" and "covariance" in res.summary["group_by"]
    assert len(res.fits) == 1 and res.fits["n_points"].item() == 5
    assert (out / "analysis" / "error_vs_n.png").is_file() and (
        out / "analysis" / "report.html"
    ).is_file()
    # isotropic, noise-free: E[R] = (1 - n/d) |Delta|^2, so the table holds the simulated points
    table = res.table.set_index("n")
    assert table.loc[20, "excess_risk"] == pytest.approx(
        1 - 20 / 50, abs=4 * table.loc[20, "excess_risk_se"]
    )


def test_a_repeated_n_is_rejected_as_caulk_train_rejects_it(tmp_path):
    bad = _theory_cli(tmp_path, "d=20", "n=[5,5]", "trials=10")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "caulk: error: n has repeated values [5]: each value is one point, give it once"
    ]
    assert not list((tmp_path / "logs").rglob("record.json"))


def test_points_at_the_interpolation_threshold_say_their_mean_risk_means_nothing(tmp_path):
    """Σ = I, noise: E[R] is infinite for |n − d| ≤ 1 and has infinite variance for |n − d| ≤ 3
    (the closed form's noise term σ² n/(d − n − 1), σ² d/(n − d − 1)); elsewhere no note."""
    proc = _theory_cli(
        tmp_path, "d=20", "n=[15,19,20,21,23,24]", "sigma=1", "trials=20", "solver=closed_form"
    )
    assert proc.returncode == 0, proc.stderr
    records = {
        r["n"]: r
        for r in map(json.loads, map(Path.read_text, (tmp_path / "logs").rglob("*.json")))
        if "n" in r
    }
    notes = {n: r["interpolation_note"] for n, r in records.items()}
    assert notes[15] is None and notes[24] is None
    for n in (19, 20, 21):
        assert "expected excess risk is infinite" in notes[n] and records[n]["theory"] is None
    assert "infinite variance" in notes[23] and records[23]["theory"] == pytest.approx(20 / 2)
    lines = [line for line in proc.stdout.splitlines() if "n=20 " in line]
    assert len(lines) == 1 and "the interpolation threshold" in lines[0]
    quiet = _theory_cli(
        tmp_path / "q", "d=20", "n=[19,20,21]", "sigma=0", "trials=5", "solver=closed_form"
    )
    assert quiet.returncode == 0 and "interpolation" not in quiet.stdout
