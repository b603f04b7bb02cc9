"""Curve mode: one process runs a grid of (n, seed), same results as one process per point."""

import pytest

from caulk.errors import CaulkConfigError
from caulk.records import read_record
from caulk.train import train, train_curve


def test_curve_writes_one_record_per_point_matching_single_runs(fast_cfg, tmp_path):
    out = tmp_path / "curve"
    records = train_curve(fast_cfg("curve.n=[20,40]", "curve.seeds=[0,1]", out=out))
    assert sorted((r["n"], r["seed"]) for r in records) == [(20, 0), (20, 1), (40, 0), (40, 1)]
    on_disk = {p.parent.name: read_record(p) for p in out.glob("*/record.json")}
    assert sorted(on_disk) == ["n20_s0", "n20_s1", "n40_s0", "n40_s1"]
    assert all(
        r["status"] == "ok" and r["curve"] and r["n_train_seen"] == r["n"] for r in on_disk.values()
    )
    single = train(fast_cfg("data.n=40", "seed=1", out=tmp_path / "single"))
    assert single["test_error"] == on_disk["n40_s1"]["test_error"]
    assert single["test_loss"] == pytest.approx(on_disk["n40_s1"]["test_loss"], rel=1e-6)
    assert (out / "n40_s1" / "checkpoints" / "last.ckpt").is_file()


def test_a_bad_n_anywhere_in_the_grid_fails_before_any_work(fast_cfg, tmp_path):
    out = tmp_path / "curve"
    with pytest.raises(CaulkConfigError, match="larger than the training pool"):
        train_curve(fast_cfg("curve.n=[20,100000]", out=out))
    assert not out.exists()
    with pytest.raises(CaulkConfigError, match="curve.n must be a non-empty list"):
        train_curve(fast_cfg("curve.n=[]", out=out))


def test_a_failing_point_is_recorded_and_the_others_still_run(fast_cfg, tmp_path):
    out = tmp_path / "curve"
    cfg = fast_cfg(
        "curve.n=[20,40]", "+callbacks.explode._target_=tests.helpers.ExplodingCallback", out=out
    )
    with pytest.raises(RuntimeError, match="2 of 2 curve points failed"):
        train_curve(cfg)
    assert [read_record(p)["status"] for p in sorted(out.glob("*/record.json"))] == [
        "failed",
        "failed",
    ]
