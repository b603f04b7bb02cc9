"""Per-point hyper-parameter selection (``tune=grid``): the planted best candidate wins, the test
split never enters the choice, within-n validation stays inside the n examples, the batched grid
equals a per-candidate loop, candidates resume and fail on their own, and bad input is one line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from caulk.analysis.collect import collect_records
from caulk.engines import batched as batched_engine
from caulk.errors import CaulkConfigError
from caulk.plan import make_plan
from caulk.run.tuned import candidate_units, run_tuned
from caulk.train import train_curve
from caulk.tune import candidates, pooled_error, select
from tests.conftest import run_cli
from tests.wandb_files import history, wandb_records

#: lr 1e-7 cannot move a head in 30 steps; 0.1 can: the planted best candidate is the second
PLANTED = ["tune=grid", "tune.grid={peft.lr:[1e-7,0.1]}", "trainer.max_steps=30"]
CURVE = ["curve.n=[40,120]", "curve.seeds=[0]", "cache.disk=false"]


def _read(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def _candidate(point_dir: Path, name: str) -> dict:
    return _read(point_dir / "tune" / name / "record.json")


def test_select_lowest_validation_error_ties_to_the_earlier():
    assert select([0.3, 0.2, 0.2]) == 1
    assert select([None, math.nan, 0.5, 0.6]) == 2
    assert select([None, None]) is None
    assert pooled_error([0.5, 0.25], [2, 6]) == pytest.approx((1 + 1.5) / 8)
    assert pooled_error([0.5, None], [2, 6]) is None


def test_grid_candidates_are_the_product_in_written_order(fast_cfg):
    cfg = fast_cfg("tune=grid", "tune.grid={peft.lr:[1,2],peft.weight_decay:[0.0,0.5]}")
    values = [c.values for c in candidates(cfg)]
    assert values == [
        {"peft.lr": 1, "peft.weight_decay": 0.0},
        {"peft.lr": 1, "peft.weight_decay": 0.5},
        {"peft.lr": 2, "peft.weight_decay": 0.0},
        {"peft.lr": 2, "peft.weight_decay": 0.5},
    ]
    default = candidates(fast_cfg("tune=grid", "peft.lr=0.02"))
    assert [c.values["peft.lr"] for c in default] == pytest.approx([0.002, 0.02, 0.2])


def test_selection_picks_the_planted_best_and_reports_it(fast_cfg, tmp_path):
    out = tmp_path / "run"
    records = train_curve(fast_cfg(*PLANTED, *CURVE, out=out))
    for rec in records:
        point = Path(rec["output_dir"])
        bad, good = _candidate(point, "c0"), _candidate(point, "c1")
        assert bad["val_error"] > good["val_error"] + 0.1
        assert rec["selected"] == {"peft.lr": 0.1}
        assert rec["test_error"] == good["test_error"]
        assert [c["val_error"] for c in rec["candidates"]] == [bad["val_error"], good["val_error"]]
        assert rec["tune"]["policy"] == "grid" and rec["tune"]["validation"] == "holdout"
        assert good["tune_candidate"] == "c1" and "tune_candidate" not in rec
    table = collect_records([out]).table  # the candidates' own records are no points
    assert sorted(table["n"]) == [40, 120]
    assert set(table["tune_policy"]) == {"grid"} and set(table["tune_validation"]) == {"holdout"}
    assert list(table["selected.peft.lr"]) == [0.1, 0.1]  # the protocol reaches the table


def _permute_test_labels(plan) -> None:
    splits = plan.points[0].datamodule.splits  # digits: tensors, shared by the points
    splits.test_y = splits.test_y[np.random.default_rng(0).permutation(len(splits.test_y))]


def test_test_labels_never_enter_the_choice(fast_cfg, tmp_path):
    grid = ["tune=grid", "tune.grid={peft.lr:[0.01,0.03,0.1]}", "trainer.max_steps=20"]
    plain = run_tuned(make_plan(fast_cfg(*grid, *CURVE, out=tmp_path / "a")))
    plan = make_plan(fast_cfg(*grid, *CURVE, out=tmp_path / "b"))
    _permute_test_labels(plan)
    permuted = run_tuned(plan)
    for a, b in zip(plain, permuted, strict=True):
        assert a["selected"] == b["selected"]
        assert a["candidates"] == b["candidates"]
    assert [a["test_error"] for a in plain] != [b["test_error"] for b in permuted]


def test_within_n_validates_inside_n_and_retrains_on_all_of_it(fast_cfg, tmp_path):
    cfg = fast_cfg(*PLANTED, *CURVE, "tune.validation=within_n", "tune.folds=3")
    plan = make_plan(cfg)
    for point in plan.points:
        units = candidate_units(plan, point, candidates(cfg))
        assert len(units) == 2 * 3
        inside = set(point.datamodule.train_idx)
        for u in units:
            train, val = set(u.datamodule.train_idx), set(u.datamodule.val_idx)
            assert train | val == inside and not train & val
        folds = [set(u.datamodule.val_idx) for u in units if u.group == 0]
        assert set().union(*folds) == inside and sum(map(len, folds)) == len(inside)
    records = run_tuned(plan)
    for point, rec in zip(plan.points, records, strict=True):
        assert rec["status"] == "ok" and rec["n"] == point.n and rec["n_val"] == 0
        assert rec["selected"] == {"peft.lr": 0.1}
        fold = _candidate(point.output_dir, "c1_f0")
        assert fold["n"] + fold["n_val"] == point.n
        assert rec["tune"]["validation"] == "within_n" and rec["tune"]["folds"] == 3


def _one_computation_only(*args, **kwargs):
    raise AssertionError("the grid's heads must train as one computation, not per candidate")


def test_batched_grid_equals_a_per_candidate_loop(fast_cfg, tmp_path, monkeypatch):
    grid = ["tune=grid", "tune.grid={peft.lr:[0.01,0.1],peft.weight_decay:[0.0,0.1]}"]
    with monkeypatch.context() as m:
        m.setattr(batched_engine, "train_heads", _one_computation_only)
        batched = train_curve(fast_cfg(*grid, *CURVE, out=tmp_path / "b"))
    assert all(r["status"] == "ok" for r in batched)
    looped = train_curve(fast_cfg(*grid, *CURVE, "cache.batch_points=false", out=tmp_path / "l"))
    assert {r["train_loop"] for r in batched} == {"batched_heads"}
    assert {r["train_loop"] for r in looped} == {"cached"}
    for b, lo in zip(batched, looped, strict=True):
        assert b["selected"] == lo["selected"]
        got = [c["val_error"] for c in b["candidates"]]
        assert got == pytest.approx([c["val_error"] for c in lo["candidates"]], abs=1e-6)
        assert b["test_error"] == pytest.approx(lo["test_error"], abs=1e-6)


def test_relaunch_retrains_only_unfinished_candidates(fast_cfg, tmp_path):
    out = tmp_path / "run"
    first = train_curve(fast_cfg(*PLANTED, *CURVE, out=out))
    point = out / "n40_s0"
    (point / "record.json").unlink()  # interrupted after its candidates, before the choice...
    (point / "tune" / "c1" / "record.json").unlink()  # ...and before its last candidate
    kept = {p: p.stat().st_mtime_ns for p in out.rglob("record.json")}
    again = train_curve(fast_cfg(*PLANTED, *CURVE, out=out))
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # nothing finished re-ran
    assert (point / "tune" / "c1" / "record.json").is_file()
    assert again[0]["selected"] == first[0]["selected"]
    assert again[0]["candidates"] == first[0]["candidates"]


def test_a_failing_candidate_is_recorded_and_the_point_still_chooses(fast_cfg, tmp_path):
    grid = [
        "tune=grid",
        "tune.grid={peft.weight_decay:[1e6,0.0]}",
        "peft.lr=0.1",
        "trainer.max_steps=30",
    ]
    (rec,) = train_curve(fast_cfg(*grid, "curve.n=[40]", "curve.seeds=[0]", out=tmp_path / "r"))
    bad = _candidate(Path(rec["output_dir"]), "c0")
    assert bad["status"] == "diverged" and "test_error" not in bad
    assert rec["status"] == "ok" and rec["selected"] == {"peft.weight_decay": 0.0}
    assert (
        rec["candidates"][0]["status"] == "diverged" and rec["candidates"][0]["val_error"] is None
    )


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        (["tune.grid={}"], "tune.grid is empty"),
        (["tune.grid={peft.lrr:[1]}"], "'peft.lrr' is not a key"),
        (["tune.grid={data.n:[10]}"], "cannot be tuned per point"),
        (["tune.grid={peft.lr:[fast]}"], "is a str, but peft.lr is a number"),
        (["tune.grid={peft.lr:[0.1,-1]}"], "peft.lr must be a positive number"),
        (["tune.validation=within_n", "curve.n=[10]"], "n=10 is too small for tune.folds=6"),
        (["tune.validation=sometimes"], "tune.validation must be holdout or within_n"),
    ],
)
def test_bad_tune_input_is_one_line_before_any_work(fast_cfg, tmp_path, overrides, says):
    out = tmp_path / "never"
    cfg = fast_cfg("tune=grid", "tune.folds=6", *overrides, out=out)
    with pytest.raises(CaulkConfigError, match=says) as e:
        train_curve(cfg)
    assert "\n" not in str(e.value)
    assert not out.exists()


@pytest.mark.parametrize("method", [["peft.solver=sgd"], ["peft=lora"]])
def test_within_n_without_a_grid_is_refused_unless_a_ridge_probe_uses_it(
    fast_cfg, tmp_path, method
):
    out = tmp_path / "never"
    cfg = fast_cfg("tune=none", "tune.validation=within_n", *method, out=out)
    with pytest.raises(CaulkConfigError, match="within_n with tune=none .* selects nothing") as e:
        train_curve(cfg)
    assert "\n" not in str(e.value)
    assert not out.exists()


@pytest.mark.slow
def test_tuned_points_reach_the_curves_wandb_run(fast_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    cfg = fast_cfg(*PLANTED, *CURVE, "logger=default", "logger.wandb.mode=offline", out=out)
    records = train_curve(cfg)
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1  # the candidates log to no run of their own
    rows = [row for row in history(wandb_records(runs[0])) if "scaling/error" in row]
    assert sorted((row["n"], row["seed"]) for row in rows) == [(40, 0), (120, 0)]
    by_n = {r["n"]: r["test_error"] for r in records}
    for row in rows:
        assert row["scaling/error"] == pytest.approx(by_n[row["n"]])


@pytest.mark.slow
def test_a_tuned_multirun_sweep_and_its_analysis(tmp_path):
    """Each job of a sweep tunes its own points; the analysis after the sweep sees points only."""
    sweep = tmp_path / "sweep"
    args = ["-m", "debug=fast", "tune=grid", "tune.grid={peft.lr:[0.01,0.1]}", "curve.n=[20,40]"]
    res = run_cli([*args, "model.init_seed=0,1", f"hydra.sweep.dir={sweep}"], timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    for job in ("0", "1"):
        for n in (20, 40):
            rec = _read(sweep / job / f"n{n}_s0" / "record.json")
            assert rec["status"] == "ok" and set(rec["selected"]) == {"peft.lr"}
            assert [c["values"]["peft.lr"] for c in rec["candidates"]] == [0.01, 0.1]
    table = collect_records([sweep]).table
    assert len(table) == 4  # 2 jobs x 2 points; no candidate record counted as a point
    assert (sweep / "analysis" / "report.html").is_file()
