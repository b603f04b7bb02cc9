"""Feature caching: same results as the uncached path; used only where the backbone is frozen."""

import pytest

from caulk.train import train, train_curve


def test_cached_and_uncached_linear_probe_agree(fast_cfg, tmp_path):
    cached = train(fast_cfg("data.n=50", "seed=2", out=tmp_path / "cached"))
    plain = train(fast_cfg("data.n=50", "seed=2", "cache.features=false", out=tmp_path / "plain"))
    assert cached["features_cached"] and not plain["features_cached"]
    assert cached["test_error"] == pytest.approx(
        plain["test_error"], abs=1 / 450
    )  # <= 1 test example
    assert cached["test_loss"] == pytest.approx(plain["test_loss"], rel=1e-4)
    assert (
        cached["n_train_seen"] == plain["n_train_seen"] == 50
        and cached["n_test"] == plain["n_test"] == 450
    )


def test_a_cached_curve_matches_its_single_points(fast_cfg, tmp_path):
    records = train_curve(fast_cfg("curve.n=[20,40]", "curve.seeds=[0,1]", out=tmp_path / "curve"))
    assert all(r["features_cached"] for r in records)
    single = train(fast_cfg("data.n=40", "seed=1", out=tmp_path / "single"))
    point = next(r for r in records if (r["n"], r["seed"]) == (40, 1))
    assert point["test_error"] == single["test_error"]
    assert point["test_loss"] == pytest.approx(single["test_loss"], rel=1e-6)


def test_methods_that_train_inside_the_backbone_are_not_cached(fast_cfg):
    rec = train(fast_cfg("peft=lora", "data.n=30"))
    assert rec["status"] == "ok" and not rec["features_cached"]


def test_a_non_boolean_cache_switch_is_rejected_before_any_work(fast_cfg, tmp_path):
    from caulk.errors import CaulkConfigError

    with pytest.raises(
        CaulkConfigError, match="cache.features must be true or false, got 'sometimes'"
    ):
        train(fast_cfg("cache.features=sometimes", out=tmp_path / "run"))
    assert not (tmp_path / "run").exists()
