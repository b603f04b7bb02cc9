"""Sample-complexity answers: n*(E) of planted curves (closed forms) with covering bootstrap
intervals, the ratio of two planted curves, extrapolation flagged and measured, D_E beyond the
from-scratch range kept out of the D_T law, one-line bad input, and the CLI end to end."""

import json

import numpy as np
import pandas as pd
import pytest

from caulk.analysis.answers import answer_lines, ratios, sample_complexity
from caulk.analysis.fits import CurveFit
from caulk.analysis.transfer import effective_data_transferred, fit_transfer_law
from caulk.analyze import main
from caulk.run.record import write_json_atomic

NS = np.array([8, 16, 32, 64, 128, 256, 512, 1024, 2048])
KEYS = ["model", "peft"]


def _pow3(a, b, c):
    return lambda n: a + b * np.asarray(n, float) ** -c


def _pow3_n_star(a, b, c, target):
    """The closed form n*(E) = ((E - a) / b)^(-1/c) of e(n) = a + b n^-c."""
    return ((target - a) / b) ** (-1 / c)


def _points(curves, seeds, noise, rng, ns=NS):
    """Records of each planted curve {model: e(n)}: one point per (n, seed), Gaussian noise."""
    rows = [
        {
            "model": model,
            "peft": "linear",
            "n": n,
            "seed": s,
            "test_error": e(n) + rng.normal(0, noise),
        }
        for model, e in curves.items()
        for n in ns
        for s in range(seeds)
    ]
    return pd.DataFrame(rows)


#: planted curves and, per target, n* in closed form
PLANTED = {
    "pow3": (_pow3(0.1, 1.5, 0.5), 0.2, _pow3_n_star(0.1, 1.5, 0.5, 0.2)),
    "exp3": (lambda n: 0.1 + 0.5 * np.exp(-n / 300), 0.3, -300 * np.log(0.2 / 0.5)),
    "logpower3": (
        lambda n: 0.6 / (1 + (n / np.exp(4.0)) ** 0.8),
        0.2,
        np.exp(4.0) * (0.6 / 0.2 - 1) ** (1 / 0.8),
    ),
}


@pytest.mark.parametrize("planted", sorted(PLANTED))
def test_n_star_is_recovered_and_its_interval_covers_the_truth(planted):
    curve, target, truth = PLANTED[planted]
    rng = np.random.default_rng(5)
    covered, trials = 0, 10
    for trial in range(trials):
        pts = _points({"m": curve}, seeds=8, noise=0.01, rng=rng)
        row = sample_complexity(pts, KEYS, "test_error", [target], "auto", 40, trial).iloc[0]
        assert row["n_star"] == pytest.approx(truth, rel=0.25)
        assert row["n_star_lo"] <= row["n_star"] <= row["n_star_hi"]
        assert not row["extrapolated"] and row["replicates"] == 40
        covered += row["n_star_lo"] <= truth <= row["n_star_hi"]
    assert covered >= 0.7 * trials


def test_the_ratio_of_two_planted_curves_is_recovered_with_a_covering_interval():
    small, large = (0.05, 1.5, 0.45), (0.05, 1.5, 0.7)
    rng = np.random.default_rng(2)
    pts = _points({"small": _pow3(*small), "large": _pow3(*large)}, 6, 0.004, rng)
    answers = sample_complexity(pts, KEYS, "test_error", [0.2, 0.12], "pow3", 60, 0)
    table = ratios(answers, KEYS, {"model": "small"}).set_index("target")
    assert list(table["model"]) == ["large", "large"]
    for target in (0.2, 0.12):
        truth = _pow3_n_star(*small, target) / _pow3_n_star(*large, target)
        r = table.loc[target]
        assert r["ratio"] == pytest.approx(truth, rel=0.15)
        assert r["ratio_lo"] <= truth <= r["ratio_hi"]
        assert r["baseline"] == "small"  # named as the report names it: the keys that vary
    lines = answer_lines(answers, table.reset_index(), KEYS)
    assert any(
        line.startswith("large needs ") and "fewer examples than small" in line for line in lines
    ), lines


def test_extrapolation_is_flagged_and_says_by_how_far():
    a, b, c = 0.1, 1.5, 0.5
    ns = np.array([16, 32, 64, 128, 256])
    pts = _points({"m": _pow3(a, b, c)}, 3, 1e-5, np.random.default_rng(0), ns)
    sc = sample_complexity(pts, KEYS, "test_error", [0.3, 0.15, 0.05], "pow3", 20, 0)
    sc = sc.set_index("target")
    inside, beyond, unreachable = sc.loc[0.3], sc.loc[0.15], sc.loc[0.05]
    assert not inside["extrapolated"] and inside["extrapolation"] == 1.0
    # 0.15 is below the smallest measured error (0.1 + 1.5/16 = 0.194): n* = 900 = 3.5x 256
    assert beyond["extrapolated"] and beyond["n_star"] == pytest.approx(900, rel=0.01)
    assert beyond["extrapolation"] == pytest.approx(900 / 256, rel=0.01)
    assert "n* is 3.5" in beyond["note"] and "x the largest n measured" in beyond["note"]
    assert unreachable["n_star"] == np.inf and "unreachable" in unreachable["note"]


def test_a_target_near_an_uncertain_floor_gets_a_lower_bound_and_no_estimate():
    """pow3 with floor 0.2 under realistic noise, targets just above the floor: the line levels
    off above them, but the floor's interval and some draws reach them. (A target at the floor
    itself is a coin flip between this and "unreachable" on the bootstrap's draws.) The
    answer is "at least lo" (lo the draws' 2.5% quantile, beyond the measured n), no n*, and
    the console says ">= lo"; lower targets need more examples."""
    rng = np.random.default_rng(0)
    rows = [
        {"curve": "c", "n": n, "seed": s, "test_error": 0.2 + 1.5 * n**-0.5 + rng.normal(0, sd)}
        for n in (10, 20, 40, 80, 160, 320, 640)
        for s in range(3)
        for sd in [0.03 * (n / 10) ** -0.3]
    ]
    answers = sample_complexity(pd.DataFrame(rows), ["curve"], "test_error", [0.21, 0.2075, 0.205])
    assert (answers["status"] == "at_least").all()
    assert answers["n_star"].isna().all() and np.isinf(answers["n_star_hi"]).all()
    lows = answers["n_star_lo"].to_numpy()
    assert (lows > 640).all() and (np.diff(lows) > 0).all()
    for line, lo in zip(answer_lines(answers, pd.DataFrame(), ["curve"]), lows, strict=True):
        assert f">= {lo:,.0f}" in line and "at least" in line and "measure larger n" in line


def test_one_seed_gives_an_answer_without_an_interval():
    pts = _points({"m": _pow3(0.1, 1.5, 0.5)}, 1, 0.0, np.random.default_rng(0))
    row = sample_complexity(pts, KEYS, "test_error", [0.2], "pow3", 20, 0).iloc[0]
    assert row["n_star"] == pytest.approx(225, rel=1e-3)
    assert np.isnan(row["n_star_lo"]) and "one seed: no interval" in row["note"]


def test_d_e_beyond_the_scratch_range_is_flagged_and_kept_out_of_the_law():
    scratch = CurveFit(a=0.05, b=2.0, c=0.5, rmse=0, n_points=6)
    k, alpha, scratch_n_max = 20.0, 0.5, 500.0
    rows = []
    for n in (10, 20, 40, 80, 160, 320):
        d_e = n + k * n**alpha  # planted: D_T = 20 n^0.5
        rows.append({"n": n, "mean": 0.05 + 2.0 * d_e**-0.5, "backbone_params": 1e6})
    pts = effective_data_transferred(pd.DataFrame(rows), scratch, scratch_n_max)
    d_e = pts["n"] + k * pts["n"] ** alpha
    np.testing.assert_array_equal(pts["extrapolated"], d_e > scratch_n_max)
    assert pts["extrapolated"].sum() == 1  # n = 320: D_E = 320 + 20 * 320^0.5 = 678 > 500
    law = fit_transfer_law(pts)
    assert law["points"] == 5 and law["left_out_extrapolated"] == 1
    assert law["alpha"] == pytest.approx(alpha, abs=1e-6)
    kept = fit_transfer_law(pts, allow_extrapolation=True)
    assert kept["points"] == 6 and kept["left_out_extrapolated"] == 0


def _write_sweep(root, rng, seeds=5):
    """Records of two planted pow3 curves (vit_pico slower than vit_nano), one dir per point."""
    truth = {"vit_pico": (0.05, 1.5, 0.45), "vit_nano": (0.05, 1.5, 0.7)}
    job = 0
    for model, (a, b, c) in truth.items():
        for n in (16, 32, 64, 128, 256, 512):
            for seed in range(seeds):
                record = {
                    "model": model,
                    "peft": "linear",
                    "data": "digits",
                    "weights": "zoo",
                    "n": n,
                    "seed": seed,
                    "status": "ok",
                    "test_error": a + b * n**-c + rng.normal(0, 0.003),
                    "backbone_params": 1000,
                }
                write_json_atomic(root / str(job) / "record.json", record)
                job += 1
    return truth


def test_the_cli_writes_sample_complexity_and_ratios(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    truth = _write_sweep(sweep, np.random.default_rng(4))
    argv = [str(sweep), "--target-error", "0.2,0.12", "--baseline", "model=vit_pico"]
    assert main([*argv, "--family", "pow3", "--bootstrap", "40"]) == 0
    out = sweep / "analysis"
    sc = pd.read_csv(out / "sample_complexity.csv")
    assert len(sc) == 4
    for _, r in sc.iterrows():
        expected = _pow3_n_star(*truth[r["model"]], r["target"])
        assert r["n_star"] == pytest.approx(expected, rel=0.1)
        assert r["n_star_lo"] <= r["n_star"] <= r["n_star_hi"] and r["family"] == "pow3"
        assert r["extrapolated"] == (r["model"] == "vit_pico" and r["target"] == 0.12)
    rt = pd.read_csv(out / "ratios.csv")
    assert list(rt["model"]) == ["vit_nano", "vit_nano"]
    for _, r in rt.iterrows():
        pico, nano = (_pow3_n_star(*truth[m], r["target"]) for m in ("vit_pico", "vit_nano"))
        assert r["ratio"] == pytest.approx(pico / nano, rel=0.15)
    fits = pd.read_csv(out / "fits.csv")
    assert {"family", "at_bound", "backtest_n", "backtest_mmf4", "backtest_pow3"} <= set(fits)
    assert (fits["backtest_n"] == 256).all()  # six n: the backtest holds out the last two
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["answers"]) == 4 and len(summary["ratios"]) == 2
    assert "bootstrap percentile" in summary["intervals"] and summary["family"] == "pow3"
    report = (out / "report.html").read_text()
    assert "Sample complexity n*(E)" in report and "backtest_<wbr>mmf4" in report
    console = capsys.readouterr().out
    assert "vit_nano needs " in console and "fewer examples than vit_pico " in console
    assert "digits" not in console.split("outputs in")[0]  # one name per curve: constant keys out
    assert "n*(0.20) = " in console


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--target-error", "1.5"], "caulk: error: --target-error 1.5 is not an error in (0, 1)"),
        (["--target-error", "abc"], "caulk: error: --target-error takes errors in (0, 1)"),
        (["--family", "pow9"], "caulk: error: --family 'pow9' is unknown; choose auto or one of"),
        (["--baseline", "model=vit_pico"], "caulk: error: --baseline compares n*(E): give"),
        (
            ["--target-error", "0.2", "--baseline", "model=vit_giga"],
            "caulk: error: --baseline model=vit_giga matches no curve",
        ),
        (
            ["--target-error", "0.2", "--baseline", "size=3"],
            "caulk: error: --baseline key 'size' is not a curve key",
        ),
    ],
)
def test_bad_flags_are_one_line_errors_and_write_nothing(tmp_path, capsys, flags, message):
    sweep = tmp_path / "sweep"
    _write_sweep(sweep, np.random.default_rng(0), seeds=1)
    assert main([str(sweep), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err
    assert not (sweep / "analysis").exists()
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".analysis")]


def test_a_curve_that_never_reaches_the_target_gets_no_ratio_but_a_plain_sentence():
    rng = np.random.default_rng(3)
    pts = _points({"base": _pow3(0.05, 1.5, 0.5), "flat": _pow3(0.3, 1.5, 0.5)}, 3, 1e-4, rng)
    answers = sample_complexity(pts, KEYS, "test_error", [0.2], "pow3", 20, 0)
    table = ratios(answers, KEYS, {"model": "base"})
    assert table["ratio"].iloc[0] == 0.0  # n*(base) / inf
    lines = answer_lines(answers, table, KEYS)
    assert "flat vs base for error 0.20: no ratio" in lines[-1]
    assert "flat: n*(0.20) = inf" in "\n".join(lines)


def test_ratios_say_when_each_backbone_rests_on_one_pretraining_run(tmp_path, capsys):
    """One zoo entry per model: the console and the report say the ratio's interval leaves out
    the backbone's own randomness; two pre-training runs of a model (as seeds) drop the note."""
    sweep = tmp_path / "sweep"
    _write_sweep(sweep, np.random.default_rng(4))
    for path in sweep.rglob("record.json"):
        record = json.loads(path.read_text())
        write_json_atomic(path, {**record, "zoo_entry": f"caulk_{record['model']}-m4000-s0"})
    argv = [
        str(sweep),
        "--target-error",
        "0.2",
        "--baseline",
        "model=vit_pico",
        "--bootstrap",
        "20",
    ]
    assert main(argv) == 0
    note = "Each curve rests on a single backbone run"
    assert f"  note: {note}" in capsys.readouterr().out
    assert note in (sweep / "analysis" / "report.html").read_text()

    for path in sweep.rglob("record.json"):  # odd seeds: a second pre-training run
        record = json.loads(path.read_text())
        entry = f"caulk_{record['model']}-m4000-s{record['seed'] % 2}"
        write_json_atomic(path, {**record, "zoo_entry": entry})
    assert main(argv) == 0
    assert note not in capsys.readouterr().out


def test_a_lora_curve_has_one_name_in_the_console_models_and_answers(tmp_path, capsys):
    """The PEFT knob by its name ("rank=8") in the model lines as in the answers and legend,
    never the generic "knob=8"."""
    rng = np.random.default_rng(6)
    for peft, knob, b in (("linear", None, 1.5), ("lora", "rank", 1.0)):
        for n in (10, 20, 40, 80, 160):
            for seed in range(3):
                write_json_atomic(
                    tmp_path / "sweep" / f"{peft}{n}_{seed}" / "record.json",
                    {
                        "model": "vit_pico", "peft": peft, "data": "digits", "weights": "zoo",
                        "peft_knob": knob, "peft_knob_value": 8 if knob else None,
                        "n": n, "seed": seed, "status": "ok",
                        "test_error": 0.05 + b * n**-0.5 + rng.normal(0, 0.005),
                    },
                )  # fmt: skip
    assert main([str(tmp_path / "sweep"), "--target-error", "0.3", "--bootstrap", "20"]) == 0
    out = capsys.readouterr().out
    lora_lines = [line for line in out.splitlines() if line.startswith("  lora")]
    assert len(lora_lines) >= 2 and all("rank=8" in line for line in lora_lines), lora_lines
    assert "knob=8" not in out
