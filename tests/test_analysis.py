"""Analysis: fits recover planted curves, CIs cover, D_T recovers k/alpha/beta, analyze end to end."""

import json

import numpy as np
import pandas as pd
import pytest

from caulk.analysis import (
    bootstrap_over_seeds,
    fit_offset_power_law,
    fit_power_law,
    fit_transfer_law,
)
from caulk.analysis.fits import CurveFit
from caulk.analysis.transfer import effective_data_transferred
from caulk.analyze import analyze, main
from caulk.errors import CaulkConfigError
from caulk.run.record import write_json_atomic

NS = np.array([8, 16, 32, 64, 128, 256, 512, 1024, 2048])


def _noisy_curve(a, b, c, seeds, noise, rng):
    rows = []
    for seed in range(seeds):
        for n in NS:
            rows.append({"n": n, "seed": seed, "test_error": a + b * n**-c + rng.normal(0, noise)})
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("a", "b", "c"), [(0.05, 1.0, 0.2), (0.1, 2.0, 0.5), (0.02, 3.0, 0.8), (0.0, 1.5, 1.0)]
)
def test_fitter_recovers_planted_exponents(a, b, c):
    """Within 4 standard deviations of least squares' own precision (the inverse Fisher
    information at the truth): e.g. c = 0.2 +- 0.011, not +- 0.1."""
    rng = np.random.default_rng(0)
    pts = _noisy_curve(a, b, c, seeds=5, noise=0.002, rng=rng)
    means = pts.groupby("n")["test_error"].mean()
    fit = fit_offset_power_law(means.index, means.to_numpy())
    se = 0.002 / np.sqrt(5)
    sd_a, _, sd_c = fisher_sd(NS.astype(float), a, b, c, se)
    assert abs(fit.c - c) <= 4 * sd_c
    assert abs(fit.a - a) <= 4 * sd_a
    assert fit.rmse < 2 * se


def fisher_sd(n: np.ndarray, a: float, b: float, c: float, se: float) -> np.ndarray:
    """The asymptotic sd of the least-squares (a, b, c) of a + b n^-c with noise ``se`` at
    each n: the square roots of the inverse Fisher information's diagonal."""
    jac = np.stack([np.ones_like(n), n**-c, -b * np.log(n) * n**-c], axis=1)
    return np.sqrt(np.diag(np.linalg.inv(jac.T @ jac))) * se


@pytest.mark.parametrize(("a", "b", "c"), [(0.15, 1.0, 0.3), (0.1, 2.0, 0.5), (0.02, 3.0, 0.8)])
def test_the_fitted_exponent_is_as_precise_as_least_squares_can_be(a, b, c):
    """Realistic noise (7 n from 10 to 640, 3 seeds of sd 0.02): over 100 noisy curves, the
    spread of the fitted c matches the inverse Fisher information within 25% and its bias is
    under a third of that sd (a fitter stuck on a grid would not). Truths whose floor is far
    from the bound a >= 0: near it (a = 0.05, c = 0.2 here) the bound itself narrows the spread
    to 0.6 of Fisher's, which is no defect."""
    rng = np.random.default_rng(1)
    n = np.array([10, 20, 40, 80, 160, 320, 640], float)
    se = 0.02 / np.sqrt(3)
    cs = [fit_offset_power_law(n, a + b * n**-c + rng.normal(0, se, len(n))).c for _ in range(100)]
    sd_c = fisher_sd(n, a, b, c, se)[2]
    z = (np.array(cs) - c) / sd_c
    assert 0.75 < z.std() < 1.25, z.std()
    assert abs(z.mean()) < 1 / 3, z.mean()


@pytest.mark.slow
def test_the_offset_fit_is_at_least_as_good_as_a_local_fit_started_at_the_truth():
    """The profile fit's SSE is never above scipy's bounded least squares from the planted
    parameters, on noisy curves whose a/c trade-off is flat."""
    from scipy.optimize import curve_fit

    rng = np.random.default_rng(4)
    n = np.array([10, 20, 40, 80, 160, 320, 640], float)
    for _ in range(25):
        a, b, c = rng.uniform(0, 0.3), rng.uniform(0.3, 3), rng.uniform(0.1, 1.5)
        e = (a + b * n**-c) * (1 + 0.05 * rng.standard_normal(len(n)))
        e_min = float(e.min())

        def law(n, a, b, c):
            return a + b * n**-c

        start = (min(a, e_min), b, c)
        local, _ = curve_fit(
            law, n, e, p0=start, bounds=([0, 0, 1e-3], [e_min, np.inf, 5]), maxfev=20_000
        )
        fit = fit_offset_power_law(n, e)
        sse_local = float(np.sum((law(n, *local) - e) ** 2))
        assert 0 <= fit.a <= e_min and fit.b >= 0 and 1e-3 <= fit.c <= 5
        assert fit.rmse**2 * len(n) <= sse_local * (1 + 1e-6) + 1e-15


def test_bootstrap_cis_cover_the_truth_in_most_trials():
    rng = np.random.default_rng(1)
    a, b, c = 0.1, 1.0, 0.5
    covered = 0
    trials = 20
    for t in range(trials):
        pts = _noisy_curve(a, b, c, seeds=6, noise=0.01, rng=rng)
        ci = bootstrap_over_seeds(pts, "test_error", replicates=100, rng_seed=t)
        assert ci["c"][0] <= ci["c"][1]
        covered += ci["c"][0] <= c <= ci["c"][1]
    assert covered >= 0.7 * trials


def test_too_few_points_are_refused_with_a_clear_message():
    with pytest.raises(CaulkConfigError, match="need >= 3 distinct n, got 2"):
        fit_offset_power_law([10, 20, 10], [0.5, 0.4, 0.52])
    with pytest.raises(CaulkConfigError, match="need >= 2 distinct n, got 1"):
        fit_power_law([10, 10], [0.5, 0.4])


def test_pure_power_law_is_exact_on_exact_data():
    fit = fit_power_law(NS, 2.0 * NS**-0.4)
    assert fit.b == pytest.approx(2.0) and fit.c == pytest.approx(0.4)


def test_effective_data_transferred_recovers_planted_law():
    scratch = CurveFit(a=0.05, b=2.0, c=0.5, rmse=0, n_points=9)
    k, alpha, beta = 30.0, 0.4, 0.3
    rows = []
    for size in (1e5, 1e6, 1e7):
        for n in (10, 20, 40, 80, 160):
            d_e = n + k * n**alpha * size**beta
            rows.append(
                {
                    "n": n,
                    "mean": scratch.a + scratch.b * d_e**-scratch.c,
                    "backbone_params": size,
                    "model": f"m{int(size)}",
                    "peft": "linear",
                }
            )
    rows.append(
        {"n": 320, "mean": 0.04, "backbone_params": 1e7, "model": "m10000000", "peft": "linear"}
    )
    pts = effective_data_transferred(pd.DataFrame(rows), scratch)
    assert pts["below_scratch_asymptote"].sum() == 1  # 0.04 < a: flagged, D_E not extrapolated
    assert np.isnan(pts.loc[pts["mean"] == 0.04, "D_E"]).all()
    law = fit_transfer_law(pts)
    assert law["k"] == pytest.approx(k, rel=1e-6)
    assert law["alpha"] == pytest.approx(alpha, abs=1e-9) and law["beta"] == pytest.approx(
        beta, abs=1e-9
    )
    assert law["points"] == 15


def _write_sweep(root, rng):
    """A sweep on disk: 2 models x 4 n x 3 seeds of linear probes, plus a from-scratch curve."""
    job = 0
    truth = {"vit_pico": (0.1, 1.5, 0.5, 200_000), "vit_nano": (0.05, 1.5, 0.7, 1_200_000)}
    for model, (a, b, c, size) in truth.items():
        for n in (16, 32, 64, 128, 256):
            for seed in range(3):
                write_json_atomic(
                    root / str(job) / "record.json",
                    {
                        "model": model,
                        "peft": "linear",
                        "data": "digits",
                        "weights": "zoo",
                        "n": n,
                        "seed": seed,
                        "status": "ok",
                        "test_error": a + b * n**-c + rng.normal(0, 0.003),
                        "backbone_params": size,
                        "config": {"ignored": True},
                    },
                )
                job += 1
    for n in (16, 32, 64, 128, 256, 512):
        for seed in range(3):
            write_json_atomic(
                root / str(job) / "record.json",
                {
                    "model": "vit_pico",
                    "peft": "full",
                    "data": "digits",
                    "weights": "none",
                    "n": n,
                    "seed": seed,
                    "status": "ok",
                    "test_error": 0.02 + 3.0 * n**-0.4 + rng.normal(0, 0.002),
                    "backbone_params": 200_000,
                },
            )
            job += 1
    write_json_atomic(
        root / "failed" / "record.json",
        {
            "model": "vit_nano",
            "peft": "linear",
            "data": "digits",
            "weights": "zoo",
            "n": 512,
            "seed": 0,
            "status": "failed",
            "message": "RuntimeError: boom",
        },
    )
    (root / "missing_job" / ".hydra").mkdir(parents=True)
    return truth


def test_analyze_writes_table_fits_figures_report_and_reports_failures(tmp_path):
    sweep = tmp_path / "sweep"
    truth = _write_sweep(sweep, np.random.default_rng(3))
    res = analyze([sweep], replicates=50)
    out = sweep / "analysis"
    for name in (
        "table.csv",
        "table.parquet",
        "fits.csv",
        "summary.json",
        "report.html",
        "error_vs_n.png",
        "exponents.png",
        "transfer.png",
        "transfer.csv",
        "transfer_fit.json",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    table = pd.read_csv(out / "table.csv")
    assert len(table) == 2 * 5 * 3 + 6 * 3 + 1
    assert pd.read_parquet(out / "table.parquet").shape[0] == len(table)
    fits = pd.read_csv(out / "fits.csv")
    lin = fits[fits["peft"] == "linear"].set_index("model")
    for model, (a, _, c, _) in truth.items():
        sd_c = fisher_sd(np.array([16, 32, 64, 128, 256.0]), a, 1.5, c, 0.003 / np.sqrt(3))[2]
        assert abs(lin.loc[model, "c"] - c) <= 4 * sd_c
        assert lin.loc[model, "c_lo"] <= lin.loc[model, "c"] <= lin.loc[model, "c_hi"]
        assert lin.loc[model, "n_points"] == 5 and lin.loc[model, "n_seeds"] == 3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == 1 and "boom" in summary["failed_jobs"][0]["message"]
    assert summary["missing"] == 1 and summary["missing_jobs"][0].endswith("missing_job")
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "boom" in html and "missing_job" in html
    assert res.transfer is not None and res.transfer["D_T"].notna().any()


def test_analyze_cli_bad_input_is_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    assert (
        capsys.readouterr().err.strip() == f"caulk: error: sweep dir not found: {tmp_path / 'nope'}"
    )
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert "no record.json found" in capsys.readouterr().err
    assert not (tmp_path / "empty" / "analysis").exists()


@pytest.mark.slow
def test_real_multirun_then_analyze_with_a_failed_job_and_wandb_aggregate(tmp_path):
    """2 models x 3 n x 2 seeds (curve mode, real training) -> analyze -> outputs agree with records."""
    import subprocess
    import sys
    from pathlib import Path

    from caulk.run.record import read_record
    from tests.conftest import cli_env, run_cli

    sweep = tmp_path / "sweep"
    res = run_cli(
        [
            "-m",
            "model=vit_pico,vit_nano",
            "curve.n=[20,40,80]",
            "curve.seeds=[0,1]",
            "debug=fast",
            f"hydra.sweep.dir={sweep}",
        ],
        timeout=500,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert (sweep / "analysis" / "report.html").is_file()  # the on_multirun_end hook ran
    bad = run_cli(
        [
            "data.n=20",
            "debug=fast",
            "+callbacks.explode._target_=tests.helpers.ExplodingCallback",
            f"hydra.run.dir={sweep / '2'}",
        ],
        timeout=200,
    )
    assert bad.returncode != 0 and read_record(sweep / "2" / "record.json")["status"] == "failed"

    out = tmp_path / "analysis"
    result = analyze([sweep], out=out, replicates=30, wandb_mode="offline")
    records = [read_record(p) for p in sweep.rglob("record.json")]
    ok = [r for r in records if r["status"] == "ok"]
    assert len(ok) == 12 and result.summary["failed"] == 1 and result.summary["ok"] == 12
    table = pd.read_csv(out / "table.csv")
    table = table[table["status"] == "ok"]  # the failed job is in the table too, as failed
    for r in ok:
        row = table[
            (table["model"] == r["model"]) & (table["n"] == r["n"]) & (table["seed"] == r["seed"])
        ]
        assert row["test_error"].item() == pytest.approx(r["test_error"])
    fits = pd.read_csv(out / "fits.csv").set_index("model")
    assert set(fits.index) == {"vit_pico", "vit_nano"} and (fits["n_points"] == 3).all()
    for model in ("vit_pico", "vit_nano"):
        mean_80 = np.mean([r["test_error"] for r in ok if r["model"] == model and r["n"] == 80])
        f = fits.loc[model]
        assert np.isfinite(f["c"]), f.get("message")  # a failed fit fails the test
        assert f["a"] + f["b"] * 80 ** -f["c"] == pytest.approx(mean_80, abs=0.02)
    assert all((out / f).is_file() for f in ("error_vs_n.png", "report.html"))

    runs = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    wandb_bin = str(Path(sys.executable).parent / "wandb")
    dump = subprocess.run(
        [wandb_bin, "leet", "inspect", "--json", str(runs[0])],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )
    assert dump.returncode == 0, dump.stderr
    assert "aggregate" in dump.stdout  # job_type
    assert '"points.nrows":12' in dump.stdout and '"fits.nrows":2' in dump.stdout  # the two tables
    assert '"panelDefId":"wandb/lineseries/v0"' in dump.stdout  # wandb.plot.line_series
    assert '"error_vs_n_table.nrows":6' in dump.stdout  # 2 lines (model, peft) x 3 n, long format


def test_source_m_sweep_gets_its_table_and_figure(tmp_path):
    """Zoo records over source sizes m: analyze writes the m table (seed means) and its figure."""
    rng = np.random.default_rng(3)
    truth = {0: 0.7, 1000: 0.4, 32000: 0.3}
    rows = []
    for m, base in truth.items():
        for n in (20, 40, 80):
            for seed in range(3):
                err = base * (20 / n) ** 0.3 + rng.normal(0, 0.01)
                rows.append((m, n, seed, err))
                write_json_atomic(
                    tmp_path / "sweep" / f"m{m}" / f"n{n}_s{seed}" / "record.json",
                    {
                        "status": "ok",
                        "model": "vit_pico",
                        "peft": "linear",
                        "data": "digits",
                        "weights": "zoo",
                        "source_m": m,
                        "n": n,
                        "seed": seed,
                        "test_error": err,
                        "backbone_params": 200_000,
                    },
                )
    # a hub model (source_m null) next to it has no m sweep and stays out of the m table
    write_json_atomic(
        tmp_path / "sweep" / "hub" / "record.json",
        {
            "status": "ok",
            "model": "vit_b",
            "peft": "linear",
            "data": "digits",
            "weights": "hub",
            "source_m": None,
            "n": 20,
            "seed": 0,
            "test_error": 0.2,
            "backbone_params": 86_000_000,
        },
    )
    result = analyze([tmp_path / "sweep"], replicates=0)
    assert (result.out / "error_vs_source_m.png").stat().st_size > 0
    table = pd.read_csv(result.out / "source_m.csv")
    assert set(table["model"]) == {"vit_pico"} and sorted(table["source_m"]) == [0, 1000, 32000]
    expected = (
        pd.DataFrame(rows, columns=["m", "n", "seed", "err"]).groupby(["m", "n"])["err"].mean()
    )
    for _, row in table.iterrows():
        for n in (20, 40, 80):
            assert row[str(n)] == pytest.approx(expected[(row["source_m"], n)])
    assert "by source size m" in (result.out / "report.html").read_text()


def test_wandb_tables_accept_columns_of_mixed_types():
    """fits.csv marks an absent PEFT knob with "-" beside numeric knobs (raw W&B rejects it)."""
    from caulk.analysis.wandb_aggregate import wandb_table

    fits = pd.DataFrame(
        {"peft": ["linear", "lora"], "peft_knob_value": ["-", 8.0], "c": [0.3, 0.5]}
    )
    table = wandb_table(fits)
    assert table.columns == ["peft", "peft_knob_value", "c"]
    assert [row[1] for row in table.data] == ["-", "8.0"]
