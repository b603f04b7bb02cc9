"""The source stage: generated glyph source, caulk.pretrain, zoo entries and model.weights=zoo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict
from PIL import Image
from safetensors.torch import load_file

from caulk.backbones import create_backbone
from caulk.errors import CaulkConfigError
from caulk.pretrain import pretrain
from caulk.train import train, train_curve
from caulk.zoo.sources import GlyphDataset, GlyphTask
from caulk.zoo.store import entry_for, verify
from tests.conftest import CONF, REPO, cli_env

TINY_SOURCE = ["source_task.steps=3", "source_task.batch_size=16", "source_task.val_size=32"]
META_KEYS = {
    "arch",
    "kwargs",
    "source_m",
    "source_seed",
    "source",
    "source_accuracy",
    "source_classes",
    "num_params",
    "sha256",
    "name",
    "weights_file",
    "train_examples_seen",
    "wall_time_s",
    "caulk_version",
    "torch_version",
    "torch_threads",
}


def pretrain_cfg(zoo_dir: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            config_name="pretrain",
            overrides=[
                "model=vit_femto",
                "model.source_m=40",
                "progress_bar=false",
                *TINY_SOURCE,
                f"paths.zoo_dir={zoo_dir}",
                *overrides,
            ],
        )
    with open_dict(cfg):
        cfg.paths.output_dir = str(zoo_dir.parent / "out")
    return cfg


def random_imagefolder(root: Path, per_class: int, size: int) -> None:
    """An ImageFolder of random RGB images: classes ``a`` and ``b``, ``per_class`` each."""
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i}.png")


# --- the generated source -------------------------------------------------------------------


def test_glyph_example_depends_only_on_its_index():
    ds = GlyphDataset(GlyphTask(), 100_000, cache=False)  # every call renders
    alone = ds[99_999]
    in_batch = ds.__getitems__([5, 99_999, 17])[1]
    assert torch.equal(alone[0], in_batch[0]) and int(alone[1]) == int(in_batch[1])
    assert alone[0].shape == (1, 32, 32) and alone[0].min() >= 0.0 and alone[0].max() <= 1.0


def test_kept_glyphs_equal_fresh_renders_and_each_is_rendered_once(monkeypatch):
    kept = GlyphDataset(GlyphTask(), 40)
    rendered = []
    real = kept._render
    monkeypatch.setattr(kept, "_render", lambda idx: rendered.extend(idx) or real(idx))
    fresh = GlyphDataset(GlyphTask(), 40, cache=False)
    assert kept.cache and not fresh.cache
    for batch in ([3, 7, 3, 39], [7, 0, 12], [39, 12, 3]):  # repeats within and across batches
        got = kept.__getitems__(batch)
        want = fresh.__getitems__(batch)
        assert all(
            torch.equal(a[0], b[0]) and int(a[1]) == int(b[1])
            for a, b in zip(got, want, strict=True)
        )
    assert sorted(rendered) == [0, 3, 7, 12, 39]  # each once
    got[0][0].fill_(7.0)  # what a batch holds is a copy: the kept image is unchanged
    assert torch.equal(kept[39][0], fresh[39][0])
    with pytest.raises(IndexError):
        kept.__getitems__([40])


def test_a_source_too_large_to_keep_renders_on_the_fly():
    from caulk.zoo.sources import RENDER_CACHE_BYTES

    assert not GlyphDataset(GlyphTask(), RENDER_CACHE_BYTES // (32 * 32 * 4) + 1).cache


def test_glyph_splits_and_seeds_are_disjoint_streams():
    task = GlyphTask()
    train0, val0 = GlyphDataset(task, 10, "train"), GlyphDataset(task, 10, "val")
    train1 = GlyphDataset(task, 10, "train", sample_seed=1)
    for other in (val0, train1):
        assert not torch.equal(train0[3][0], other[3][0])
        assert int(train0[3][1]) == int(other[3][1])  # same class, another drawing


def test_glyph_labels_are_balanced_and_classes_differ():
    task = GlyphTask(num_classes=8)
    labels = [int(GlyphDataset(task, 80)[i][1]) for i in range(80)]
    assert np.bincount(labels).tolist() == [10] * 8
    other_task = GlyphTask(num_classes=8, task_seed=1)
    assert not np.allclose(task.templates[0][0], other_task.templates[0][0])


def test_glyph_dataset_rejects_out_of_range_index():
    with pytest.raises(IndexError):
        GlyphDataset(GlyphTask(), 5)[5]


# --- pre-training and the zoo entry ---------------------------------------------------------


def test_pretraining_is_deterministic_and_metadata_complete(tmp_path):
    cfgs = [pretrain_cfg(tmp_path / f"zoo{k}") for k in range(2)]
    metas = [pretrain(cfg) for cfg in cfgs]
    for meta in metas:
        assert set(meta) >= META_KEYS and meta["built"]
        assert meta["source_m"] == 40 and meta["arch"] == "caulk_vit_femto"
        assert 0.0 <= meta["source_accuracy"] <= 1.0
        assert meta["source_classes"] == cfgs[0].source_task.num_classes
    a, b = (load_file(m["weights_file"]) for m in metas)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert metas[0]["sha256"] == metas[1]["sha256"]
    untrained = timm.create_model("caulk_vit_femto", num_classes=0).state_dict()
    assert set(a) == set(untrained)  # the backbone only: no source head
    other_seed = pretrain(pretrain_cfg(tmp_path / "zoo2", "model.source_seed=1"))
    assert other_seed["sha256"] != metas[0]["sha256"]


def test_zoo_entry_loads_through_timm_and_equals_the_saved_tensors(tmp_path):
    cfg = pretrain_cfg(tmp_path / "zoo")
    meta = pretrain(cfg)
    with open_dict(cfg):
        cfg.model.weights = "zoo"
    backbone = create_backbone(cfg.model, cfg.source_task, cfg.paths.zoo_dir)
    saved = load_file(meta["weights_file"])
    loaded = backbone.model.state_dict()
    assert set(loaded) == set(saved) and all(torch.equal(loaded[k], saved[k]) for k in saved)
    assert backbone.weights_file == meta["weights_file"]
    assert backbone.zoo_meta["name"] == meta["name"]


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_zoo_file_is_detected_and_never_loaded(tmp_path, damage):
    cfg = pretrain_cfg(tmp_path / "zoo")
    meta = pretrain(cfg)
    path = Path(meta["weights_file"])
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:
        data[-5] ^= 0xFF
        path.write_bytes(bytes(data))
    with open_dict(cfg):
        cfg.model.weights = "zoo"
    with pytest.raises(CaulkConfigError, match="corrupt.*delete"):
        create_backbone(cfg.model, cfg.source_task, cfg.paths.zoo_dir)
    with pytest.raises(CaulkConfigError, match="corrupt"):
        pretrain(cfg)  # the CLI does not silently rebuild over it either


def test_unreadable_metadata_is_reported(tmp_path):
    cfg = pretrain_cfg(tmp_path / "zoo")
    meta = pretrain(cfg)
    entry = entry_for(cfg.model, cfg.source_task, cfg.paths.zoo_dir)
    entry.meta_path.write_text('{"name": ')
    with pytest.raises(CaulkConfigError, match="unreadable"):
        verify(entry)
    assert Path(meta["weights_file"]).is_file()


def test_recipe_changes_give_another_entry(tmp_path):
    base = pretrain_cfg(tmp_path / "zoo")
    names = {
        entry_for(c.model, c.source_task, c.paths.zoo_dir).name
        for c in (
            base,
            pretrain_cfg(tmp_path / "zoo", "source_task.steps=4"),
            pretrain_cfg(tmp_path / "zoo", "model.source_m=41"),
            pretrain_cfg(tmp_path / "zoo", "source_task.task_seed=3"),
        )
    }
    assert len(names) == 4
    same = pretrain_cfg(tmp_path / "zoo", "source_task.num_workers=1")  # does not change weights
    assert entry_for(same.model, same.source_task, same.paths.zoo_dir).name in names


def test_source_m_zero_stores_the_random_init(tmp_path):
    meta = pretrain(pretrain_cfg(tmp_path / "zoo", "model.source_m=0"))
    saved = load_file(meta["weights_file"])
    cfg = pretrain_cfg(tmp_path / "zoo", "model.weights=none", "model.init_seed=0")
    fresh = create_backbone(cfg.model).model.state_dict()  # the default random backbone
    assert set(saved) == set(fresh) and all(torch.equal(saved[k], fresh[k]) for k in fresh)
    assert meta["train_examples_seen"] == 0


def test_pretrain_on_a_user_imagefolder(tmp_path):
    random_imagefolder(tmp_path / "src", per_class=12, size=20)
    meta = pretrain(
        pretrain_cfg(
            tmp_path / "zoo",
            "source_task=imagefolder",
            f"source_task.root={tmp_path / 'src'}",
            "model.source_m=16",
            "source_task.val_size=8",
            "source_task.steps=2",
            "source_task.batch_size=8",
        )
    )
    assert meta["source"]["name"] == "imagefolder" and meta["source_classes"] == 2
    assert meta["source_val_size"] == 8
    too_many = pretrain_cfg(
        tmp_path / "zoo2",
        "source_task=imagefolder",
        f"source_task.root={tmp_path / 'src'}",
        "model.source_m=20",
    )
    with pytest.raises(CaulkConfigError, match="fewer than source_m"):
        pretrain(too_many)
    assert not (tmp_path / "zoo2").exists() or not any((tmp_path / "zoo2").glob("*.json"))


# --- model.weights=zoo in training ------------------------------------------------------------


def test_weights_zoo_builds_a_missing_entry_once_then_reuses_it(fast_cfg, tmp_path):
    zoo = tmp_path / "zoo"
    common = ["model=vit_femto", "model.weights=zoo", "model.source_m=40", *TINY_SOURCE]
    first = train(fast_cfg(*common, f"paths.zoo_dir={zoo}", out=tmp_path / "a"))
    metas = list(zoo.glob("*.json"))
    assert len(metas) == 1
    stamp = (metas[0].stat().st_mtime_ns, Path(first["weights_file"]).stat().st_mtime_ns)
    second = train(fast_cfg(*common, f"paths.zoo_dir={zoo}", "seed=1", out=tmp_path / "b"))
    assert list(zoo.glob("*.json")) == metas
    assert (metas[0].stat().st_mtime_ns, Path(second["weights_file"]).stat().st_mtime_ns) == stamp
    meta = json.loads(metas[0].read_text())
    for record in (first, second):
        assert record["status"] == "ok" and record["weights"] == "zoo"
        assert record["source_m"] == 40 and record["zoo_entry"] == meta["name"]
        assert record["source_accuracy"] == meta["source_accuracy"]


def test_source_seed_following_the_seed_pretrains_a_backbone_per_seed(fast_cfg, tmp_path):
    """``model.source_seed='${seed}'``: a curve's seeds each adapt their own pre-training run,
    the one a single run with that source seed uses."""
    zoo = tmp_path / "zoo"
    common = ["model=vit_femto", "model.weights=zoo", "model.source_m=40", *TINY_SOURCE]
    common.append(f"paths.zoo_dir={zoo}")
    curve = fast_cfg(*common, "curve.n=[20]", "curve.seeds=[0,1]", "model.source_seed=${seed}")
    records = {r["seed"]: r for r in train_curve(curve)}
    assert len(list(zoo.glob("*.json"))) == 2
    assert records[0]["zoo_entry"] != records[1]["zoo_entry"]
    single = train(
        fast_cfg(*common, "data.n=20", "seed=1", "model.source_seed=1", out=tmp_path / "s")
    )
    assert single["zoo_entry"] == records[1]["zoo_entry"]
    assert single["test_error"] == records[1]["test_error"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.weights=zoo"], "model.weights=zoo needs model.source_m"),
        (["model.weights=zoo", "model.source_m=-3"], "source_m"),
        (["model.weights=zoo", "model.source_m=10", "source_task.steps=0"], "source_task.steps"),
        (["model.weights=zoo", "model.source_m=10", "source_task.num_classes=1"], "num_classes"),
        (["model.weights=zoo", "model.source_m=10", "source_task.lr=-1"], "source_task.lr"),
        (["model.weights=zoo", "model.source_m=10", "source_task.label_smoothing=1"], "smoothing"),
        (["model.weights=zoo", "model.source_m=10", "model.source_seed=x"], "source_seed"),
    ],
)
def test_bad_zoo_config_fails_before_any_work(fast_cfg, tmp_path, overrides, message):
    zoo = tmp_path / "zoo"
    with pytest.raises(CaulkConfigError, match=message):
        train(fast_cfg(*overrides, f"paths.zoo_dir={zoo}"))
    assert not zoo.exists() and not (tmp_path / "run").exists()


def test_pretrain_cli_bad_input_is_one_line_and_leaves_nothing(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "caulk.pretrain",
            "model.source_m=-1",
            f"paths.zoo_dir={tmp_path}/z",
        ],
        cwd=REPO,
        env=cli_env(CAULK_ROOT=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "caulk: error: model.source_m must be an integer >= 0 (the source size), got -1"
    ]
    assert not (tmp_path / "z").exists() and not (tmp_path / "logs").exists()


@pytest.mark.slow
def test_concurrent_builds_of_one_entry_train_it_once(tmp_path):
    args = [
        sys.executable,
        "-m",
        "caulk.pretrain",
        "model=vit_femto",
        "model.source_m=40",
        "progress_bar=false",
        *TINY_SOURCE,
        f"paths.zoo_dir={tmp_path / 'zoo'}",
    ]
    env = cli_env(CAULK_ROOT=str(tmp_path))
    procs = [
        subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert sorted("pre-trained now" in o for o in outs) == [False, True]
    assert len(list((tmp_path / "zoo").glob("*.safetensors"))) == 1
    assert not list((tmp_path / "zoo").glob(".*.tmp"))
