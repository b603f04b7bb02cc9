"""Engines behind one interface: one object per engine in one registry, one name per engine in
the config, the record, the progress line and the analysis; records and configs that use the
old names (``fast``, ``fast_batched``, ``solver_ridge``) still read and run."""

import inspect

import pytest

from caulk.analysis.collect import collect_records
from caulk.engines.base import Engine
from caulk.engines.cached import CachedEngine
from caulk.engines.registry import ENGINES, engines_by_name, get_engine
from caulk.run.record import Record
from caulk.train import train, train_curve

NAMES = {"lightning", "cached", "batched_suffix", "batched_heads", "solver"}


def test_every_engine_is_one_registered_object_with_one_run_signature():
    assert set(ENGINES) == NAMES
    assert all(isinstance(e, Engine) and e.name == name for name, e in ENGINES.items())
    signatures = {str(inspect.signature(type(e).run)) for e in ENGINES.values()}
    assert len(signatures) == 1, signatures
    order = sorted(ENGINES.values(), key=lambda e: e.generality)
    assert order[0].name == "lightning" and len({e.generality for e in order}) == len(order)
    # the engines that fit a whole curve before its points run are exactly the batched ones
    assert {e.name for e in order if e.fits_curve} == {"batched_suffix", "batched_heads", "solver"}


def test_a_name_taken_twice_and_an_unknown_name_are_refused():
    with pytest.raises(ValueError, match="taken twice: cached"):
        engines_by_name(CachedEngine(), CachedEngine())
    with pytest.raises(KeyError, match="no engine 'turbo'; engines: lightning, cached"):
        get_engine("turbo")


def test_records_with_the_old_train_loop_names_read_as_the_engines_names(tmp_path):
    old = {"fast": "cached", "fast_batched": "batched_heads", "solver_ridge": "solver"}
    point = dict(model="vit_femto", backbone_tag="t", weights="none", source_m=None, peft="linear")
    for i, name in enumerate([*old, "batched_suffix"]):
        record = Record(**point, data="digits", n=10 + i, seed=0, status="ok", train_loop=name)
        record.update(test_error=0.5)
        record.write(tmp_path / name)
    table = collect_records([tmp_path]).table.sort_values("n")
    assert list(table["train_loop"]) == ["cached", "batched_heads", "solver", "batched_suffix"]
    assert get_engine("fast_batched") is ENGINES["batched_heads"]


def test_the_old_config_name_fast_trains_in_the_cached_engine_as_before(fast_cfg, tmp_path):
    args = ("data.n=20", "cache.disk=false", "cache.batch_points=false")
    new = train(fast_cfg(*args, "cache.loop=cached", out=tmp_path / "new"))
    old = train(fast_cfg(*args, "cache.loop=fast", out=tmp_path / "old"))
    assert new["train_loop"] == old["train_loop"] == "cached"
    assert new["test_error"] == old["test_error"] and new["test_loss"] == old["test_loss"]


def test_the_progress_line_and_the_records_use_the_same_engine_name(fast_cfg, tmp_path, capfd):
    cfg = fast_cfg("curve.n=[20,40]", "curve.seeds=[0]", "cache.disk=false", out=tmp_path / "c")
    records = train_curve(cfg)
    assert {r["train_loop"] for r in records} == {"batched_heads"}
    assert "[caulk] 2 points in one batched_heads fit" in capfd.readouterr().err
