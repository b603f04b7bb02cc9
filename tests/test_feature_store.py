"""The on-disk feature store: reuse across processes, corrupt entries, concurrent writers."""

from __future__ import annotations

import json
import multiprocessing as mp

import pytest
import torch

from caulk.cache.extract import CachedFeatures
from caulk.cache.prefix import PrefixPlan
from tests.conftest import cli_env, run_cli


def _entries(d):
    return sorted(p for p in d.iterdir() if p.suffix == ".safetensors")


CLI = [
    "debug=fast",
    "logger=csv",
    "data.n=40",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
]


@pytest.mark.slow
def test_a_second_process_reuses_the_entry_and_gets_the_same_results(tmp_path):
    store = tmp_path / "store"
    records = []
    for run in ("a", "b"):
        out = tmp_path / run
        proc = run_cli([*CLI, f"cache.dir={store}", f"hydra.run.dir={out}"], env=cli_env())
        assert proc.returncode == 0, proc.stderr[-2000:]
        records.append(json.loads((out / "record.json").read_text()))
    assert [r["cache_source"] for r in records] == ["computed", "disk"]
    assert records[0]["test_error"] == records[1]["test_error"]
    assert records[0]["test_loss"] == pytest.approx(records[1]["test_loss"], rel=1e-7)
    assert len(_entries(store)) == 1


def test_the_key_changes_with_weights_data_and_depth(fast_cfg, tmp_path):
    from caulk.train import train

    store = f"cache.dir={tmp_path / 'store'}"
    train(fast_cfg(store, "data.n=30", out=tmp_path / "a"))
    train(fast_cfg(store, "data.n=40", "seed=1", out=tmp_path / "b"))  # same pool: same entry
    assert len(_entries(tmp_path / "store")) == 1
    train(fast_cfg(store, "model.init_seed=5", out=tmp_path / "c"))  # other weights
    train(fast_cfg(store, "data.test_fraction=0.3", out=tmp_path / "d"))  # other split
    train(fast_cfg(store, "peft=partial", out=tmp_path / "e"))  # other depth
    assert len(_entries(tmp_path / "store")) == 4


@pytest.mark.parametrize("damage", ["truncate", "flip", "foreign"])
def test_a_corrupt_entry_is_detected_recomputed_and_replaced(fast_cfg, tmp_path, caplog, damage):
    from caulk.cache.store import read_entry
    from caulk.train import train

    store = tmp_path / "store"
    first = train(fast_cfg(f"cache.dir={store}", out=tmp_path / "a"))
    (entry,) = _entries(store)
    data = bytearray(entry.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[-5] ^= 0xFF  # inside the tensor payload
    else:  # a whole file written for another key
        entry.with_suffix(".bak").write_bytes(data)
        data = bytearray(data.replace(entry.stem.encode(), b"0" * len(entry.stem)))
    entry.write_bytes(bytes(data))
    assert read_entry(entry, entry.stem) is None
    with caplog.at_level("WARNING", logger="caulk.features"):
        again = train(fast_cfg(f"cache.dir={store}", out=tmp_path / "b"))
    assert "recomputing" in caplog.text
    assert again["cache_source"] == "computed" and again["test_error"] == first["test_error"]
    assert read_entry(entry, entry.stem) is not None  # replaced by a whole entry


def _write_many(path: str, key: str, seed: int, rounds: int) -> None:
    from pathlib import Path

    from caulk.cache.store import write_entry

    g = torch.Generator().manual_seed(0)  # every writer writes the same content for the key
    feats = CachedFeatures(
        torch.randn(300, 17, 64, generator=g), torch.randn(100, 17, 64), PrefixPlan(3)
    )
    for _ in range(rounds):
        write_entry(Path(path), key, feats)


@pytest.mark.slow
def test_concurrent_writers_leave_one_whole_entry(tmp_path):
    from caulk.cache.store import read_entry

    path = tmp_path / "store" / "k.safetensors"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(str(path), "k", i, 5)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs)
    entry = read_entry(path, "k")
    assert entry is not None and entry.plan == PrefixPlan(3) and entry.pool.shape == (300, 17, 64)
    assert [p.name for p in (tmp_path / "store").iterdir()] == ["k.safetensors"]  # no temp files
