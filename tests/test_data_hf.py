"""data=hf on parquet files the tests write (real PNG bytes), and the offline hub error."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caulk.data import build_datamodule
from caulk.errors import CaulkConfigError
from tests.conftest import compose_cfg
from tests.test_data_support import png_bytes

datasets = pytest.importorskip("datasets")  # the optional extra: pip install 'caulk[hf]'

CLASSES = ["ant", "bee", "cow", "doe"]
TRAIN_COUNTS = [9, 5, 7, 4]


def _write(path, counts, offset, names=None, size=(12, 10)):
    labels = np.repeat(np.arange(len(counts)), counts)
    rows = {
        "img": [{"bytes": png_bytes(offset + i, size), "path": None} for i in range(len(labels))],
        "label": [names[y] for y in labels] if names else labels.tolist(),
    }
    label_feature = datasets.Value("string") if names else datasets.ClassLabel(names=CLASSES)
    features = datasets.Features({"img": datasets.Image(), "label": label_feature})
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(path))
    return labels


@pytest.fixture(scope="module")
def parquet(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    train = _write(root / "train.parquet", TRAIN_COUNTS, 0)
    test = _write(root / "test.parquet", [2, 2, 2, 2], 1000)
    return root, train, test


def _cfg(root, *overrides):
    files = f"{{train: {root}/train.parquet, test: {root}/test.parquet}}"
    return compose_cfg(
        ["data=hf", f"+data.data_files={files}", f"data.root={root}/cache", "data.num_workers=0",
         "data.image_column=img", *overrides]
    ).data  # fmt: skip


def test_parquet_files_keep_labels_and_decode_images(parquet):
    root, train_labels, test_labels = parquet
    dm = build_datamodule(_cfg(root, "data.val_size=4"), seed=0)
    assert dm.num_classes == 4 and dm.splits.classes == CLASSES
    assert np.array_equal(dm.splits.pool_labels, train_labels)
    assert np.array_equal(dm.splits.test_labels, test_labels) and dm.n_test == 8
    image, label = dm.splits.pool[5]
    assert image.size == (12, 10) and label == train_labels[5]
    assert np.array_equal(np.asarray(image), np.asarray(_decoded(5)))
    dm.set_input_transform({"input_size": (3, 16, 16), "interpolation": "bilinear",
                            "mean": (0.5,) * 3, "std": (0.5,) * 3, "crop_pct": 1.0})  # fmt: skip
    x, y, idx = next(iter(dm.train_dataloader()))
    assert tuple(x.shape[1:]) == (3, 16, 16)
    assert y.tolist() == train_labels[idx.numpy()].tolist()


def _decoded(seed):
    import io

    from PIL import Image

    return Image.open(io.BytesIO(png_bytes(seed))).convert("RGB")


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), data=st.data())
def test_hf_subsets_are_stratified_nested_and_exact(parquet, seed, data):
    root, train_labels, _ = parquet
    pool_size = len(train_labels) - 4
    n_small = data.draw(st.integers(4, pool_size))
    n_big = data.draw(st.integers(n_small, pool_size))
    small = build_datamodule(_cfg(root, f"data.n={n_small}", "data.val_size=4"), seed)
    big = build_datamodule(_cfg(root, f"data.n={n_big}", "data.val_size=4"), seed)
    assert len(set(small.train_idx.tolist())) == n_small
    assert set(small.train_idx.tolist()) <= set(big.train_idx.tolist())
    assert not set(big.train_idx.tolist()) & set(big.val_idx.tolist())
    got = np.bincount(train_labels[small.train_idx], minlength=4)
    pool = np.bincount(train_labels[small.train_pool_idx], minlength=4).astype(float)
    assert got.min() >= 1
    grown = got > 1
    if grown.any():
        assert ((got[grown] - 0.5) / pool[grown]).max() <= ((got + 0.5) / pool).min() + 1e-12


def test_local_folder_with_string_labels_and_a_seeded_test_split(tmp_path):
    folder = tmp_path / "copy" / "data"
    folder.mkdir(parents=True)
    labels = _write(folder / "train-00000-of-00001.parquet", [10, 10, 20], 0, names=["x", "y", "z"])
    cfg = compose_cfg(
        ["data=hf", f"data.path={tmp_path / 'copy'}", f"data.root={tmp_path}/cache",
         "data.image_column=img", "data.test_split=null", "data.test_fraction=0.25",
         "data.num_workers=0"]
    ).data  # fmt: skip
    dm = build_datamodule(cfg, seed=0)
    assert dm.splits.classes == ["x", "y", "z"] and dm.n_test == 10
    assert len(dm.splits.pool_labels) == 30
    assert sorted(np.concatenate([dm.splits.pool_labels, dm.splits.test_labels])) == sorted(labels)
    assert np.bincount(dm.splits.test_labels).tolist()[2] == 5  # stratified


def test_hub_dataset_not_cached_fails_offline_in_one_line(tmp_path):
    cfg = compose_cfg(["data=hf", "data.path=caulk-tests/no-such-dataset", f"data.root={tmp_path}"])
    with pytest.raises(CaulkConfigError) as err:
        build_datamodule(cfg.data, seed=0)
    message = str(err.value)
    assert "\n" not in message and "data.download=true" in message
    assert str(tmp_path / "hf") in message


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["data.image_column=picture"],
            "data.image_column='picture' is not a column; columns: img",
        ),
        (["data.test_split=validation"], "data.test_split='validation' is not a split"),
    ],
)
def test_bad_hf_input_is_one_line(parquet, overrides, message):
    with pytest.raises(CaulkConfigError, match=message):
        build_datamodule(_cfg(parquet[0], *overrides), seed=0)
