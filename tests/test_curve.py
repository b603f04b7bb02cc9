"""Curve mode: one process runs a grid of (n, seed), same results as one process per point."""

import pytest

from caulk.errors import CaulkConfigError
from caulk.run.record import read_record
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


@pytest.mark.parametrize("engine", ["cache.loop=cached", "cache.features=false"])
def test_init_seed_following_the_seed_gives_each_point_its_own_backbone(fast_cfg, tmp_path, engine):
    """``model.init_seed='${seed}'`` is the backbone seed axis: every point is the single run
    with that init, not the first point's backbone reused (records must not claim an init they
    did not train on)."""
    out = tmp_path / "curve"
    cfg = fast_cfg("curve.n=[20]", "curve.seeds=[0,1]", "model.init_seed=${seed}", engine, out=out)
    records = {r["seed"]: r for r in train_curve(cfg)}
    assert [records[s]["init_seed"] for s in (0, 1)] == [0, 1]
    for seed in (0, 1):
        single = train(
            fast_cfg(
                "data.n=20",
                f"seed={seed}",
                f"model.init_seed={seed}",
                engine,
                out=tmp_path / f"single{seed}",
            )
        )
        assert records[seed]["test_error"] == single["test_error"]
    fixed = train(fast_cfg("data.n=20", "seed=1", "model.init_seed=0", engine, out=tmp_path / "f"))
    assert fixed["test_error"] != records[1]["test_error"]  # the init does change the point


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


@pytest.mark.parametrize(
    "extra",
    [
        [],  # no interpolation reads n or seed: resolved once, n and seed set per point
        ["model.init_seed=${seed}"],
        ["+data.note=n${data.n}", "+tag=${data}"],
        ["+data.copy_of_n=${.n}"],  # relative: cannot tell statically
    ],
)
def test_every_point_gets_its_own_resolved_config(fast_cfg, extra):
    from omegaconf import OmegaConf

    from caulk.plan import curve_points, resolve_points
    from caulk.plan import point_cfg as _point_cfg

    cfg = fast_cfg("curve.n=[20,40]", "curve.seeds=[3,5]", *extra)
    points = curve_points(cfg)
    expected = [OmegaConf.to_container(_point_cfg(cfg, n, s), resolve=True) for n, s in points]
    assert resolve_points(cfg, points) == expected
    assert [(c["data"]["n"], c["seed"]) for c in expected] == [(20, 3), (20, 5), (40, 3), (40, 5)]


@pytest.mark.parametrize(
    ("interpolation", "may_read"),
    [
        ("${peft.lr}", False),
        ("${oc.env:CAULK_CACHE,${oc.env:HOME}/.cache/caulk}", False),
        ("${hydra:runtime.output_dir}/x", False),
        ("${seed}", True),
        ("n${data.n}", True),
        ("${oc.env:X,${seed}}", True),
        ("${..n}", True),
        ("${eval:'${paths.root_dir}'}", True),
    ],
)
def test_which_interpolations_can_read_a_points_n_or_seed(interpolation, may_read):
    from caulk.plan import _may_read_point_keys

    assert _may_read_point_keys(interpolation) is may_read


def test_the_default_config_resolves_a_curve_once(fast_cfg):
    from caulk.plan import _interpolations, _may_read_point_keys

    found = list(_interpolations(fast_cfg("curve.n=[20,40]")))
    assert "${peft.lr}" in found  # the walk reaches the interpolations
    assert not [s for s in found if _may_read_point_keys(s)]
