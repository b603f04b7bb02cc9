"""Adaptive curves (``curve.n=auto``): the rule's choices, one-line errors for a bad question,
the loop on planted curves with the truth known (its final interval must keep its coverage under
optional stopping), and a real run end to end, resumed without retraining."""

import dataclasses
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from caulk.adaptive import (
    AdaptiveSpec,
    Trace,
    adaptive_loop,
    fit_answers,
    initial_ns,
    propose,
    ratio_loop,
)
from caulk.adaptive_value import cost_model, fantasy, seed_sd_at
from caulk.analysis.averaging import seed_noise
from caulk.analysis.pipeline import analyze
from caulk.errors import CaulkConfigError
from caulk.train import train_curve
from tests.conftest import compose_cfg, run_cli
from tests.wandb_files import history, of_type, wandb_records

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.adaptive import adaptive_trial, planted_train, real_curve, spec_for  # noqa: E402
from benchmarks.coverage import TRUTHS, true_n_star  # noqa: E402

SPEC = AdaptiveSpec((0.2,), 10, 1000, 1.3, 60, None, (0, 1, 2), "n_star")


def _answer(status="ok", n_star=100.0, lo=50.0, hi=200.0, target=0.2):
    return {"target": target, "status": status, "n_star": n_star, "n_star_lo": lo, "n_star_hi": hi}


def _done(ns, seeds=(0, 1, 2)):
    return {(n, s) for n in ns for s in seeds}


def test_the_initial_design_is_four_log_spaced_n_over_the_lower_half_of_the_range():
    assert initial_ns(SPEC) == [10, 22, 46, 100]  # 10 .. sqrt(10 * 1000), log-spaced


def test_a_wide_answer_inside_the_range_is_measured_at_its_n_star():
    d = propose([_answer(n_star=70.0)], SPEC, _done([10, 22, 46, 100]))
    assert d.stop is None and d.points == [(70, 0), (70, 1), (70, 2)]
    assert "measure at n=70" in d.why[0]


def test_the_bracket_rule_measures_at_both_ends_of_the_interval():
    bracket = dataclasses.replace(SPEC, rule="bracket")
    d = propose([_answer(n_star=70.0, lo=40.0, hi=90.0)], bracket, _done([10, 22, 46, 100]))
    assert d.points == [(40, s) for s in (0, 1, 2)] + [(90, s) for s in (0, 1, 2)]


def test_when_n_star_is_already_measured_the_width_is_seed_noise_so_seeds_are_added():
    d = propose([_answer(n_star=97.0)], SPEC, _done([10, 22, 46, 100]))
    assert d.points == [(100, 3), (100, 4), (100, 5)]
    assert "more seeds at n=100" in d.why[0]


def test_an_answer_beyond_the_data_pins_the_tail_one_bounded_step_at_a_time():
    far = propose([_answer(n_star=5000.0, lo=900.0, hi=9000.0)], SPEC, _done([10, 22, 46, 100]))
    assert far.points == [(400, 0), (400, 1), (400, 2)]  # at most 4x the largest n measured
    near = propose([_answer(status="at_least", n_star=np.nan, lo=150.0, hi=np.inf)], SPEC,
                   _done([10, 22, 46, 100]))  # fmt: skip
    assert near.points == [(150, 0), (150, 1), (150, 2)]  # the lower bound, when closer
    capped = propose([_answer(n_star=5000.0, lo=900.0, hi=9000.0)], SPEC, _done([100, 400]))
    assert capped.points == [(1000, 0), (1000, 1), (1000, 2)]  # never past the range


def test_it_stops_with_a_reason():
    done = _done([10, 22, 46, 100])
    assert propose([_answer(lo=90.0, hi=110.0)], SPEC, done).stop == "precision"
    pool = propose([_answer(n_star=5000.0, lo=900.0, hi=9000.0)], SPEC, _done([100, 1000]))
    assert pool.stop == "pool" and "beyond the range's top n=1000" in pool.why[0]
    floor = propose([_answer(status="unreachable", n_star=np.inf, lo=np.nan, hi=np.nan)], SPEC,
                    done)  # fmt: skip
    assert floor.stop == "settled"
    both = [_answer(lo=90.0, hi=110.0), _answer(target=0.1, n_star=70.0)]
    assert propose(both, SPEC, done).points == [(70, 0), (70, 1), (70, 2)]  # one still open


def test_the_loop_on_a_planted_curve_reaches_the_precision_and_covers_the_truth():
    spec = spec_for("pow3", 1.3)
    trace = Trace(None, spec)
    records = adaptive_loop(spec, planted_train("pow3", np.random.default_rng(3)), trace)
    last = trace.rounds[-1]
    assert last["stop"] == "precision" and len(trace.rounds) >= 2
    answer = trace.final[0]
    assert answer["n_star_hi"] / answer["n_star_lo"] <= 1.3
    assert answer["n_star_lo"] <= true_n_star("pow3", spec.targets[0]) <= answer["n_star_hi"]
    assert len(records) == last["points_so_far"] <= spec.max_points
    seen = [tuple(p) for r in trace.rounds for p in r["points"]]
    assert len(seen) == len(set(seen))  # no point is trained twice


def test_the_budget_stops_the_loop_before_it_is_exceeded():
    spec = dataclasses.replace(spec_for("pow3", 1.01), max_points=15)
    trace = Trace(None, spec)
    records = adaptive_loop(spec, planted_train("pow3", np.random.default_rng(0)), trace)
    assert trace.rounds[-1]["stop"] == "budget" and len(records) <= 15


@pytest.mark.slow
def test_the_final_interval_of_adaptive_runs_covers_the_truth_90_to_99_percent():
    """Optional stopping must not break the intervals: 5 truths x 8 trials of the default
    (value) rule, seeded."""
    rows = [
        adaptive_trial(truth, 1.3, np.random.default_rng([7, t, i]), "value")
        for i, truth in enumerate(("pow2", "pow3", "pow4", "exp3", "mmf4"))
        for t in range(8)
    ]
    coverage = np.mean([r["covered"] for r in rows])
    assert 0.85 <= coverage <= 1.0, coverage  # 40 runs: a true 0.95 lands in [0.875, 1.0]


BAD = [
    (["curve.n=auto"], "curve.n=auto needs curve.target_error"),
    (["curve.n=auto", "curve.target_error=1.5"], "curve.target_error must be an error in (0, 1)"),
    (["curve.n=auto", "curve.target_error=0"], "curve.target_error must be an error in (0, 1)"),
    (["curve.n=auto", "curve.target_error=0.2", "curve.precision=1.0"], "curve.precision must be a number > 1"),
    (["curve.n=auto", "curve.target_error=0.2", "curve.n_range=[100,50]"], "curve.n_range must be [lo, hi]"),
    (["curve.n=auto", "curve.target_error=0.2", "curve.n_range=[]"], "curve.n_range must be [lo, hi]"),
    (["curve.n=auto", "curve.target_error=0.2", "curve.max_points=0"], "curve.max_points must be a positive integer"),
    (["curve.n=auto", "curve.target_error=0.2", "curve.max_seconds=0"], "curve.max_seconds must be a positive number"),
    (["curve.n=auto", "curve.target_error=0.2", "curve.rule=median"], "curve.rule must be value or n_star or bracket"),
    (["curve.n=auto", "curve.target_error=0.2", "curve.baseline=[]"], "curve.baseline must be a list of overrides"),
    (["curve.n=auto", "curve.target_error=0.2", 'curve.baseline=["model.colour=red"]'], "is not key=value with a key of the config"),
    (["curve.n=auto", "curve.target_error=0.2", 'curve.baseline=["model=vit_t"]'], "names a config group"),
    (["curve.n=auto", "curve.target_error=0.2", 'curve.baseline=["curve.precision=2"]'], "the baseline shares the job's curve"),
    (["curve.n=[10,20]", 'curve.baseline=["model.init_seed=1"]'], "curve.baseline is set but curve.n is not auto"),
    (["curve.n=auto", "curve.target_error=0.2", 'curve.baseline=["model.init_seed=0"]'], "changes nothing"),
    (["curve.n=[10,20]", "curve.target_error=0.2"], "curve.target_error is set but curve.n is not auto"),
    (["curve.n=auto", "curve.target_error=0.2", "curve.n_range=[10,99999]"], "reaches past the pool"),
    (["curve.n=auto", "curve.target_error=0.2", "curve.n_range=[2,100]"], "starts below the 10 classes"),
    (["curve.n=auto", "curve.target_error=0.2", "curve.n_range=[10,15]"], "is too narrow to learn a curve from"),
]  # fmt: skip


@pytest.mark.parametrize("overrides, message", BAD, ids=[m for _, m in BAD])
def test_a_bad_question_is_one_line_before_any_work(fast_cfg, tmp_path, overrides, message):
    out = tmp_path / "run"
    with pytest.raises(CaulkConfigError, match=re.escape(message)) as e:
        train_curve(fast_cfg(*overrides, out=out))
    assert "\n" not in str(e.value)
    assert not out.exists()


def test_an_adaptive_probe_curve_answers_and_a_relaunch_retrains_nothing(
    fast_cfg, tmp_path, capsys
):
    args = ["peft=linear", "curve.n=auto", "curve.target_error=0.3", "curve.precision=1.6"]
    cfg = fast_cfg(*args, "++peft.solver=ridge", "budget.mode=epochs", out=tmp_path / "run")
    records = train_curve(cfg)
    trace = json.loads((tmp_path / "run" / "adaptive.json").read_text())
    rounds = trace["rounds"]
    assert trace["spec"]["targets"] == [0.3] and trace["spec"]["n_lo"] == 10  # digits' classes
    assert rounds[-1]["stop"] in ("precision", "pool", "settled", "budget")
    assert (
        len(records) == rounds[-1]["points_so_far"] == len({(r["n"], r["seed"]) for r in records})
    )
    assert all(r["status"] == "ok" for r in records)
    n_hi = trace["spec"]["n_hi"]  # digits' pool
    first = sorted({n for n, _ in rounds[0]["points"]})
    assert first == sorted({round(v) for v in np.geomspace(10, (10 * n_hi) ** 0.5, 4)})
    out = capsys.readouterr().out
    assert "[adaptive] n*(0.3)" in out and "stop:" in out
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "run").glob("n*_s*/record.json")}
    again = train_curve(cfg)
    assert {(r["n"], r["seed"]) for r in again} == {(r["n"], r["seed"]) for r in records}
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # nothing retrained
    assert json.loads((tmp_path / "run" / "adaptive.json").read_text())["rounds"] == rounds

    report = analyze([tmp_path / "run"], out=tmp_path / "analysis").files["report.html"]
    section = report.read_text().split("<section id='adaptive'>")[1].split("</section>")[0]
    assert f"stopped after round {len(rounds)}: <b>{rounds[-1]['stop']}</b>" in section
    assert section.count("<tr><td>") == len(rounds)
    assert "; ".join(rounds[-1]["why"]) in section.replace("&#x27;", "'")


def test_the_rounds_reach_the_curves_wandb_run(tmp_path):
    out = tmp_path / "run"
    args = ["peft=linear", "curve.n=auto", "curve.target_error=0.3", "curve.precision=1.6"]
    cfg = compose_cfg([*args, "trainer.enable_progress_bar=false", "logger=default"], out)
    train_curve(cfg)
    trace = json.loads((out / "adaptive.json").read_text())
    # offline, each round's and the trace's log open the one run again (its id follows the
    # output dir): one file each, which `wandb sync` merges into that run
    files = [wandb_records(d) for d in sorted((out / "wandb").glob("offline-run-*"))]
    assert len(files) == len(trace["rounds"]) + 1
    assert len({of_type(f, "run")[0]["run_id"] for f in files}) == 1
    records = [r for f in files for r in f]
    rows = [r for r in history(records) if "adaptive/round" in r]
    assert [r["adaptive/round"] for r in rows] == [r["round"] for r in trace["rounds"]]
    for row, rnd in zip(rows, trace["rounds"], strict=True):
        (answer,) = rnd["answers"]
        assert row["adaptive/points"] == rnd["points_so_far"]
        assert row["adaptive/E0_3/n_star"] == pytest.approx(answer["n_star"])
        if answer["n_star_hi"] is not None:
            assert row["adaptive/E0_3/n_star_hi"] == pytest.approx(answer["n_star_hi"])
    summary = {k: v for s in of_type(records, "summary") for k, v in s["update"].items()}
    assert summary["adaptive"]["stop"] == trace["rounds"][-1]["stop"]
    points = [r for r in history(records) if "scaling/error" in r]  # the rounds' points, one run
    assert len(points) == trace["rounds"][-1]["points_so_far"]


@pytest.mark.slow
def test_each_job_of_a_multirun_adapts_on_its_own(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        [
            "-m",
            "model=vit_femto,vit_pico",
            "curve.n=auto",
            "curve.target_error=0.4",
            "curve.precision=2",
            "logger=csv",
            f"hydra.sweep.dir={sweep}",
        ],
        recipe=(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    traces = {d.name: json.loads((d / "adaptive.json").read_text()) for d in sweep.glob("[0-9]")}
    assert set(traces) == {"0", "1"}
    for job, trace in traces.items():
        records = [json.loads(p.read_text()) for p in (sweep / job).glob("n*_s*/record.json")]
        assert len(records) == trace["rounds"][-1]["points_so_far"]
        assert {r["model"] for r in records} == {("vit_femto", "vit_pico")[int(job)]}
    assert proc.stdout.count("[adaptive] n*(0.4)") == 2


def test_a_target_beyond_the_range_stops_at_its_top_and_says_it_is_an_extrapolation():
    spec = dataclasses.replace(spec_for("pow3", 1.3), n_lo=10, n_hi=100)  # E is met near n=200
    trace = Trace(None, spec)
    records = adaptive_loop(spec, planted_train("pow3", np.random.default_rng(1)), trace)
    assert max(r["n"] for r in records) == 100 and trace.rounds[-1]["stop"] == "pool"
    assert "(the range ends at n=100: this answer is an extrapolation)" in trace.summary()


def test_a_points_cost_is_fitted_from_the_training_seconds_its_records_measured():
    rows = [
        {"n": n, "seed": 0, "status": "ok", "wall_time_s": 2.0 + 0.01 * n} for n in (10, 50, 400)
    ]
    cost = cost_model(rows)
    assert (
        cost.measured
        and cost.fixed == pytest.approx(2.0)
        and cost.per_example == pytest.approx(0.01)
    )
    assert cost(1000) == pytest.approx(12.0)
    flat = cost_model([{**r, "wall_time_s": None} for r in rows])
    assert not flat.measured and flat(10) == flat(5000)


def test_the_seed_spread_of_a_new_n_follows_the_measured_spreads_in_log_n():
    rng = np.random.default_rng(0)

    def sd(n):
        return 0.03 * (n / 10) ** -0.3  # the planted seed noise law

    rows = [
        {"n": n, "seed": s, "status": "ok", "test_error": 0.3 + sd(n) * rng.standard_normal()}
        for n in (10, 40, 160, 640) for s in range(40)
    ]  # fmt: skip
    (at,) = seed_sd_at(rows, [5000])
    assert at == pytest.approx(sd(5000), rel=0.15)
    made = fantasy(lambda n: 0.25, rows, [(5000, 0), (5000, 1), (5000, 2)])
    errors = np.array([r["test_error"] for r in made])
    assert errors.mean() == pytest.approx(0.25) and errors.std(ddof=1) < at


def test_fantasised_seeds_read_back_through_the_noise_model_as_the_predicted_seed_noise():
    """A fantasy adds leverage, not noise: the analysis' seed-noise model, fitted to the
    fantasised seeds alone, recovers the seed sd the fantasy was made from."""
    rng = np.random.default_rng(1)
    rows = [
        {"n": n, "seed": s, "status": "ok", "test_error": 0.3 + 0.02 * rng.standard_normal()}
        for n in (10, 40, 160, 640) for s in range(3)
    ]  # fmt: skip
    ns = [100, 1000, 10000]
    predicted = seed_sd_at(rows, ns)
    made = pd.DataFrame(fantasy(lambda n: 0.25, rows, [(n, s) for n in ns for s in range(3)]))
    spread = made.groupby("n")["test_error"].std()
    noise = seed_noise(np.array(ns, float), spread.loc[ns].to_numpy(), np.full(3, 3.0))
    np.testing.assert_allclose(noise.se * np.sqrt(3), predicted, rtol=1e-6)


def test_the_value_rule_weighs_each_candidate_by_its_measured_cost():
    """The same curve after its first round: when every point costs the same the rule pins the
    far end of the interval; when a point's seconds grow with n it buys seeds nearer n* instead."""
    spec = spec_for("pow4", 1.3)
    truth_index = sorted(TRUTHS).index("pow4")  # as benchmarks/adaptive.py seeds a trial
    points = [(n, s) for n in initial_ns(spec) for s in spec.seeds]
    records = planted_train("pow4", np.random.default_rng([0, 1, truth_index]))(points)
    answers = fit_answers(records, spec)
    flat = propose(answers, spec, set(points), records)
    timed = [{**r, "wall_time_s": 0.01 * r["n"]} for r in records]
    steep = propose(answers, spec, set(points), timed)
    assert max(n for n, _ in steep.points) < max(n for n, _ in flat.points)
    assert "0.01 s/example" in steep.why[0] and "no cost measured" in flat.why[0]


def test_against_a_baseline_the_loop_pins_down_the_ratio_and_covers_the_planted_one():
    """The curve reaches each error at a third of the baseline's n: the ratio is 3."""
    spec = dataclasses.replace(spec_for("pow3", 1.6), baseline=("model.weights=none",))
    target = spec.targets[0]  # pow3's error at n=200: the baseline's n*; the curve's is 200/3
    base = planted_train("pow3", np.random.default_rng(6))
    fast = planted_train("pow3", np.random.default_rng(5))

    def faster(points):  # the curve's error at n is the baseline truth's at 3n
        rows = fast([(3 * n, s) for n, s in points])
        return [{**r, "n": n} for r, (n, _) in zip(rows, points, strict=True)]

    trace = Trace(None, spec)
    rows = ratio_loop(spec, {"curve": faster, "baseline": base}, trace)
    last = trace.rounds[-1]
    (ratio,) = last["ratios"]
    assert last["stop"] == "precision" and ratio["ratio_hi"] / ratio["ratio_lo"] <= 1.6
    assert ratio["ratio_lo"] <= 3.0 <= ratio["ratio_hi"]
    assert ratio["target"] == target and len(trace.rounds) >= 2
    assert last["points_so_far"] == len(rows["curve"]) + len(rows["baseline"])
    assert "n*(baseline) / n*(curve) at E=" in trace.summary()


def test_a_real_curve_against_its_baseline_trains_both_and_reports_the_ratio(
    fast_cfg, tmp_path, capsys
):
    args = ["peft=linear", "curve.n=auto", "curve.target_error=0.3", "curve.precision=2.5"]
    base = 'curve.baseline=["model.init_seed=1"]'  # another random init of the backbone
    cfg = fast_cfg(*args, base, "++peft.solver=ridge", "budget.mode=epochs", out=tmp_path / "run")
    records = train_curve(cfg)
    trace = json.loads((tmp_path / "run" / "adaptive.json").read_text())
    last = trace["rounds"][-1]
    assert trace["spec"]["baseline"] == ["model.init_seed=1"] and "ratios" in last
    own = [json.loads(p.read_text()) for p in (tmp_path / "run").glob("n*_s*/record.json")]
    theirs = [
        json.loads(p.read_text()) for p in (tmp_path / "run/baseline").glob("n*_s*/record.json")
    ]
    assert len(own) + len(theirs) == len(records) == last["points_so_far"]
    assert {r["init_seed"] for r in own} == {0} and {r["init_seed"] for r in theirs} == {1}
    assert own and theirs and all(r["status"] == "ok" for r in own + theirs)
    out = capsys.readouterr().out
    assert "[adaptive] n*(baseline) / n*(curve) at E=0.3:" in out
    assert {r.get("curve_role") for r in own} == {None}
    assert {r["curve_role"] for r in theirs} == {"baseline"}
    files = analyze([tmp_path / "run"], out=tmp_path / "analysis").files
    section = files["report.html"].read_text().split("<section id='adaptive'>")[1]
    assert "n*(baseline) / n*(curve)" in section.split("</section>")[0]
    # init_seed is no curve key: the role alone keeps the two curves apart in the fits
    fits = pd.read_csv(files["fits.csv"])
    assert len(fits) == 2 and sorted(fits.curve_role.fillna("-")) == ["-", "baseline"]


@pytest.mark.slow
def test_the_real_curve_benchmark_tries_grids_up_from_the_smallest_and_reports_each(tmp_path):
    """``benchmarks/adaptive.py --real``'s comparison on a real probe curve: fixed grids from
    k = 4 up until one reaches the precision, each reported with its own answer."""
    precision = 1.6
    r = real_curve(["model.weights=none"], 0.3, precision, tmp_path, range(4, 8))
    tried = r["grids_tried"]
    assert [g["k"] for g in tried] == list(range(4, 4 + len(tried)))
    for g in tried:
        lo, hi = g["answer"]["n_star_lo"], g["answer"]["n_star_hi"]
        precise = bool(lo and hi and np.isfinite(hi) and hi / lo <= precision)
        assert g["precise"] == precise
        assert g["points"] == 3 * g["k"]  # k distinct log-spaced n over [10, pool] x 3 seeds
    assert not any(g["precise"] for g in tried[:-1]) and r["smallest_precise_grid"] == tried[-1]
    assert r["adaptive"]["points"] >= 12 and r["adaptive"]["train_s"] > 0


def test_when_n_star_and_its_interval_ends_are_measured_the_value_rule_offers_the_gaps_between():
    """The demo's LoRA curve as measured (seed means and spreads per n, E = 0.2) with n* at a
    measured n and both ends of its interval near measured ones: a new n halfway (in log)
    between the measured neighbours the interval spans (74 and 99) is offered next to more
    seeds, and every new n offered lies in that gap."""
    rng = np.random.default_rng(0)
    measured = {10: (0.52, 0.08), 22: (0.42, 0.05), 49: (0.26, 0.02), 74: (0.23, 0.01),
                99: (0.195, 0.02), 109: (0.197, 0.02), 138: (0.128, 0.013)}  # fmt: skip
    records = [
        {"n": n, "seed": s, "status": "ok", "test_error": m + sd * rng.standard_normal()}
        for n, (m, sd) in measured.items() for s in range(3)
    ]  # fmt: skip
    spec = AdaptiveSpec((0.2,), 10, 5120, 1.3, 60, None, (0, 1, 2), "value")
    answer = _answer(n_star=99.0, lo=76.0, hi=108.0)  # n*, its ends: within 10% of measured n
    decision = propose([answer], spec, {(r["n"], r["seed"]) for r in records}, records)
    new_n = re.sub(r"more seeds at n=\d+", "", decision.why[0])
    offered = [int(n) for n in re.findall(r"n=(\d+)", new_n)]
    assert offered and all(74 < n < 99 for n in offered)
