"""data=imagefolder on real image files: splits, nested stratified subsets, corrupt images, training."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caulk.backbones import create_backbone
from caulk.data import build_datamodule
from caulk.data.imagefolder import UnreadableImageError
from caulk.errors import CaulkConfigError
from caulk.train import train
from tests.conftest import compose_cfg
from tests.test_data_support import files_under, make_image_folder, write_image


def _cfg(root: Path, *overrides: str):
    return compose_cfg(["data=imagefolder", f"data.root={root}", "data.num_workers=0", *overrides])


def _pico_data_config():
    return create_backbone(compose_cfg(["model=vit_pico"]).model).data_config


@pytest.fixture
def folder(tmp_path):
    make_image_folder(tmp_path / "train", {"cat": 6, "dog": 4, "eel": 5})
    make_image_folder(tmp_path / "test", {"cat": 2, "dog": 2, "eel": 3}, suffix=".jpg")
    return tmp_path


def test_separate_test_folder_keeps_folder_labels(folder):
    dm = build_datamodule(_cfg(folder, "data.n=6", "data.val_size=3").data, seed=0)
    s = dm.splits
    assert s.classes == ["cat", "dog", "eel"] and dm.num_classes == 3
    assert np.bincount(s.pool_labels).tolist() == [6, 4, 5]
    assert dm.n_test == 7 and np.bincount(s.test_labels).tolist() == [2, 2, 3]
    for i in range(len(s.pool_labels)):  # label = the class folder the file lies in
        path, label = s.pool.samples[i]
        assert Path(path).parent.name == s.classes[label] == s.classes[s.pool_labels[i]]
    assert dm.n == 6 and len(dm.val_idx) == 3 and not set(dm.train_idx) & set(dm.val_idx)


def test_loaders_yield_backbone_sized_batches_with_pool_indices(folder):
    dm = build_datamodule(_cfg(folder, "data.n=6", "data.val_size=3", "data.batch_size=4").data, 0)
    data_config = _pico_data_config()
    dm.set_input_transform(data_config)
    seen = []
    for x, y, idx in dm.train_dataloader():
        assert x.dtype == torch.float32 and tuple(x.shape[1:]) == tuple(data_config["input_size"])
        assert y.dtype == torch.int64
        assert torch.equal(y, torch.as_tensor(dm.splits.pool_labels[idx.numpy()]))
        seen += idx.tolist()
    assert sorted(seen) == sorted(dm.train_idx.tolist())
    test_idx = torch.cat([idx for _, _, idx in dm.test_dataloader()])
    assert test_idx.tolist() == list(range(7))
    x, _, _ = next(iter(dm.val_dataloader()))
    expected = dm.eval_transform(dm.splits.pool[int(dm.val_idx[0])][0])
    assert torch.allclose(x[0], expected)  # timm's eval transform of the backbone


def test_augment_policy_applies_to_training_images_only(folder):
    dm = build_datamodule(_cfg(folder, "data.augment=randaugment", "data.val_size=3").data, 0)
    dm.set_input_transform(_pico_data_config())
    image = dm.splits.pool[0][0]
    torch.manual_seed(0)
    draws = [dm.train_transform(image) for _ in range(4)]
    assert any(not torch.equal(draws[0], d) for d in draws[1:])  # random augmentation
    assert torch.equal(dm.eval_transform(image), dm.eval_transform(image))
    assert dm.dataset("pool", dm.val_idx).transform is dm.eval_transform
    dm.set_input_transform(_pico_data_config(), augment=False)  # cached / probed features
    assert dm.train_transform is dm.eval_transform


def test_seeded_split_when_there_is_no_test_folder(tmp_path):
    make_image_folder(tmp_path / "all", {"a": 10, "b": 20, "c": 10})
    cfg = _cfg(tmp_path, "data.train_dir=all", "data.test_dir=null", "data.test_fraction=0.25")
    dm = build_datamodule(cfg.data, seed=0)
    test_counts = np.bincount(dm.splits.test_labels)
    assert dm.n_test == 10 and np.all(np.abs(test_counts - 0.25 * np.array([10, 20, 10])) < 1)
    pool_paths = {dm.splits.pool.dataset.samples[i][0] for i in dm.splits.pool.indices}
    test_paths = {dm.splits.test.dataset.samples[i][0] for i in dm.splits.test.indices}
    assert not pool_paths & test_paths and len(pool_paths | test_paths) == 40
    again = build_datamodule(cfg.data, seed=9)  # the run seed does not move the test split
    assert test_paths == {
        again.splits.test.dataset.samples[i][0] for i in again.splits.test.indices
    }


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    counts=st.lists(st.integers(2, 9), min_size=2, max_size=5),
    seed=st.integers(0, 2**31 - 1),
    data=st.data(),
)
def test_imagefolder_subsets_are_stratified_nested_and_exact(counts, seed, data):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_image_folder(root / "train", {f"class{c}": k for c, k in enumerate(counts)})
        make_image_folder(
            root / "test", dict.fromkeys((f"class{c}" for c in range(len(counts))), 1)
        )
        k = len(counts)
        pool_size = sum(counts) - k  # val_size = k held out
        n_small = data.draw(st.integers(k, pool_size))
        n_big = data.draw(st.integers(n_small, pool_size))
        small = build_datamodule(_cfg(root, f"data.n={n_small}", f"data.val_size={k}").data, seed)
        big = build_datamodule(_cfg(root, f"data.n={n_big}", f"data.val_size={k}").data, seed)
    labels = small.splits.pool_labels
    assert len(small.train_idx) == n_small == len(set(small.train_idx.tolist()))
    assert set(small.train_idx.tolist()) <= set(big.train_idx.tolist())
    assert np.array_equal(small.val_idx, big.val_idx)
    assert not set(big.train_idx.tolist()) & set(big.val_idx.tolist())
    got = np.bincount(labels[small.train_idx], minlength=k)
    assert got.min() >= 1  # every class, then in proportion to the training pool
    pool_counts = np.bincount(labels[small.train_pool_idx], minlength=k).astype(float)
    grown = got > 1
    if grown.any():
        assert ((got[grown] - 0.5) / pool_counts[grown]).max() <= (
            (got + 0.5) / pool_counts
        ).min() + 1e-12


def _corrupt(folder: Path) -> Path:
    bad = folder / "train" / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    return bad


def test_a_corrupt_image_is_fatal_by_default_and_names_its_path(folder):
    bad = _corrupt(folder)
    with pytest.raises(CaulkConfigError) as err:
        build_datamodule(_cfg(folder).data, seed=0)
    message = str(err.value)
    assert "\n" not in message and str(bad) in message and "data.on_corrupt=skip" in message
    assert "1 unreadable image(s)" in message


def test_corrupt_images_can_be_skipped_with_a_count(folder):
    bad = _corrupt(folder)
    write_image(folder / "train" / "eel" / "truncated.png", seed=5).write_bytes(b"\x89PNG\r\n")
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable image\(s\)"):
        dm = build_datamodule(_cfg(folder, "data.on_corrupt=skip", "data.n=12").data, seed=0)
    assert str(bad) in dm.splits.skipped_images and len(dm.splits.skipped_images) == 2
    assert np.bincount(dm.splits.pool_labels).tolist() == [6, 4, 5]  # the good ones, all kept
    assert dm.n == 12 == len(dm.train_idx)


def test_an_image_that_breaks_while_loading_names_its_path(folder):
    bad = _corrupt(folder)
    dm = build_datamodule(_cfg(folder, "data.scan_images=off", "data.val_size=0").data, seed=0)
    dm.set_input_transform(_pico_data_config())
    with pytest.raises(UnreadableImageError, match=str(bad)):
        for _ in dm.train_dataloader():
            pass


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.root=null"], "data=imagefolder needs data.root=DIR"),
        (["data.train_dir=nope"], "train_dir folder .*nope does not exist"),
        (["data.test_dir=null"], "needs data.test_dir .* or data.test_fraction"),
        (["data.test_fraction=0.2"], "not both"),
        (["data.on_corrupt=ignore"], "data.on_corrupt must be one of error, skip"),
        (["data.augment=heavy"], "unknown data.augment='heavy'"),
    ],
)
def test_bad_imagefolder_input_is_one_line(folder, overrides, message):
    with pytest.raises(CaulkConfigError, match=message) as err:
        build_datamodule(_cfg(folder, *overrides).data, seed=0)
    assert "\n" not in str(err.value)


def test_test_folder_with_an_unknown_class_is_rejected(folder):
    write_image(folder / "test" / "fox" / "0.png", seed=1)
    with pytest.raises(CaulkConfigError, match="classes not in the train folder: fox"):
        build_datamodule(_cfg(folder).data, seed=0)


def test_train_end_to_end_on_an_image_folder(folder, fast_cfg, tmp_path):
    out = tmp_path / "run"
    cfg = fast_cfg(
        "data=imagefolder", f"data.root={folder}", "data.num_workers=0", "data.n=9",
        "data.val_size=3", "data.batch_size=3", "data.augment=flip_crop", out=out,
    )  # fmt: skip
    rec = train(cfg)
    assert rec["status"] == "ok" and rec["data"] == "imagefolder"
    assert (rec["n"], rec["n_val"], rec["n_test"], rec["pool_size"]) == (9, 3, 7, 12)
    assert rec["n_train_seen"] == 9
    assert [p.name for p in files_under(out) if p.name == "record.json"] == ["record.json"]
