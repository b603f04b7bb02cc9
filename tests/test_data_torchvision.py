"""The torchvision transfer sets: class / split mapping, real on-disk layouts, missing-data errors."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torchvision.datasets as tvd

from caulk.data import build_datamodule
from caulk.data.torchvision_sets import TORCHVISION_SETS
from caulk.errors import CaulkConfigError
from tests.conftest import CONF, REPO, compose_cfg
from tests.test_data_support import files_under, make_image_folder, write_image

# name -> (torchvision class, classes, pool split(s), test split or None for a seeded split)
EXPECTED = {
    "cifar10": (tvd.CIFAR10, 10, [{"train": True}], {"train": False}),
    "cifar100": (tvd.CIFAR100, 100, [{"train": True}], {"train": False}),
    "svhn": (tvd.SVHN, 10, [{"split": "train"}], {"split": "test"}),
    "stl10": (tvd.STL10, 10, [{"split": "train"}], {"split": "test"}),
    "flowers102": (tvd.Flowers102, 102, [{"split": "train"}, {"split": "val"}], {"split": "test"}),
    "pets": (tvd.OxfordIIITPet, 37, [{"split": "trainval"}], {"split": "test"}),
    "dtd": (tvd.DTD, 47, [{"split": "train"}, {"split": "val"}], {"split": "test"}),
    "eurosat": (tvd.EuroSAT, 10, [{}], None),
    "food101": (tvd.Food101, 101, [{"split": "train"}], {"split": "test"}),
    "caltech101": (tvd.Caltech101, 101, [{}], None),
}
TORCHVISION_CONFIGS = sorted(p.stem for p in (CONF / "data").glob("*.yaml"))
TORCHVISION_CONFIGS = [n for n in TORCHVISION_CONFIGS if n in TORCHVISION_SETS]


def test_every_transfer_set_has_a_config():
    assert sorted(TORCHVISION_CONFIGS) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_maps_to_the_right_class_and_splits(name):
    cls, num_classes, pool_splits, test_split = EXPECTED[name]
    cfg = compose_cfg([f"data={name}"])
    spec = TORCHVISION_SETS[cfg.data.name]
    assert getattr(tvd, spec.cls_name) is cls
    assert spec.num_classes == num_classes
    assert [spec.train] + ([spec.val] if spec.val else []) == pool_splits
    assert spec.test == test_split
    accepted = inspect.signature(cls).parameters
    for kwargs in [*pool_splits, test_split or {}, spec.common]:
        assert set(kwargs) <= set(accepted)
    assert cfg.data.download is False
    assert str(cfg.data.root).endswith("caulk/data")
    if test_split is None:  # no official test split: a seeded one, fixed by split_seed
        assert (cfg.data.test_fraction is None) != (cfg.data.train_per_class is None)
    if len(pool_splits) == 2:  # an official validation split exists and is used by default
        assert cfg.data.val_policy == "official"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_missing_data_fails_in_one_line_naming_root_layout_and_remedy(name, tmp_path):
    root = tmp_path / "datasets"
    cfg = compose_cfg([f"data={name}", f"data.root={root}"])
    with pytest.raises(CaulkConfigError) as err:
        build_datamodule(cfg.data, seed=0)
    message = str(err.value)
    assert "\n" not in message
    assert str(root) in message and "data.download=true" in message
    assert TORCHVISION_SETS[name].required[0] in message  # the expected layout
    assert files_under(tmp_path) == []  # nothing written, not even the root


@pytest.mark.slow  # a fresh interpreter (imports torch + Lightning)
def test_download_without_network_fails_clearly_and_writes_nothing(tmp_path):
    root = tmp_path / "deep" / "datasets"
    code = (
        "from tests.conftest import compose_cfg\n"
        "from caulk.data import build_datamodule\n"
        "from caulk.errors import CaulkConfigError\n"
        f"cfg = compose_cfg(['data=cifar10', 'data.root={root}', 'data.download=true'])\n"
        "try:\n    build_datamodule(cfg.data, 0)\n"
        "except CaulkConfigError as e:\n    print(e)\n    raise SystemExit(2)\n"
    )
    dead_proxy = "http://127.0.0.1:9"  # nothing listens there: no network, whatever the host has
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "no_proxy": ""}
    env |= {k: dead_proxy for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")}
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 2, res.stderr
    line = res.stdout.strip()
    assert "\n" not in line and line.startswith("data=cifar10: downloading CIFAR-10 failed")
    assert str(root) in line and "data.download=false" in line
    assert not (tmp_path / "deep").exists()  # no partial download left behind ...
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]  # ... nor its temporary folder


def _small(name: str, root: Path, *extra: str):
    return compose_cfg([f"data={name}", f"data.root={root}", "data.num_workers=0", *extra]).data


def test_eurosat_layout_gives_a_seeded_stratified_test_split(tmp_path):
    classes = [f"class{c}" for c in range(10)]
    make_image_folder(tmp_path / "eurosat" / "2750", dict.fromkeys(classes, 10), suffix=".jpg")
    dm = build_datamodule(_small("eurosat", tmp_path, "data.val_size=10"), seed=0)
    s = dm.splits
    assert (len(s.pool_labels), len(s.test_labels), dm.n_test) == (80, 20, 20)
    assert np.bincount(s.test_labels, minlength=10).tolist() == [2] * 10  # stratified 20%
    assert dm.num_classes == 10 and len(dm.val_idx) == 10 and dm.n == 70
    again = build_datamodule(_small("eurosat", tmp_path, "data.val_size=10"), seed=5)
    assert np.array_equal(again.splits.test_labels, s.test_labels)
    test_paths = {s.test.dataset.samples[i][0] for i in s.test.indices}
    pool_paths = {s.pool.dataset.samples[i][0] for i in s.pool.indices}
    assert not test_paths & pool_paths and len(test_paths | pool_paths) == 100
    other = build_datamodule(
        _small("eurosat", tmp_path, "data.val_size=10", "data.split_seed=1"), 0
    )
    assert {
        other.splits.test.dataset.samples[i][0] for i in other.splits.test.indices
    } != test_paths


def _dtd(root: Path, per_split: int = 2) -> list[str]:
    classes = [f"texture{c:02d}" for c in range(47)]
    base = root / "dtd" / "dtd"
    (base / "labels").mkdir(parents=True)
    for s, split in enumerate(("train", "val", "test")):
        lines = []
        for c, name in enumerate(classes):
            for i in range(per_split):
                file = f"{name}_{split}{i}.jpg"
                write_image(
                    base / "images" / name / file, seed=s * 10_000 + c * 10 + i, size=(6, 6)
                )
                lines.append(f"{name}/{file}")
        (base / "labels" / f"{split}1.txt").write_text("\n".join(lines) + "\n")
    return classes


def test_dtd_layout_uses_train_val_pool_and_the_official_val_split(tmp_path):
    _dtd(tmp_path)
    dm = build_datamodule(_small("dtd", tmp_path, "data.batch_size=16"), seed=0)
    assert dm.num_classes == 47 and dm.n_test == 94
    assert len(dm.splits.pool_labels) == 188  # train + val
    assert np.array_equal(dm.val_idx, np.arange(94, 188))  # the official val split
    assert np.array_equal(np.sort(dm.train_idx), np.arange(94)) and dm.n == 94
    image, label = dm.splits.pool[int(dm.val_idx[0])]
    assert image.size == (6, 6) and label == dm.splits.pool_labels[dm.val_idx[0]]
    held_out = build_datamodule(
        _small("dtd", tmp_path, "data.val_policy=holdout", "data.val_size=47"), 0
    )
    assert len(held_out.val_idx) == 47 and held_out.pool_size == 141


def test_pets_layout_reads_category_labels(tmp_path):
    base = tmp_path / "oxford-iiit-pet"
    (base / "annotations").mkdir(parents=True)
    for split, n in (("trainval", 2), ("test", 1)):
        lines = []
        for breed in range(37):
            for i in range(n):
                image_id = f"breed{breed:02d}_{split}{i}"
                write_image(base / "images" / f"{image_id}.jpg", seed=breed * 7 + i, size=(6, 6))
                lines.append(f"{image_id} {breed + 1} {1 + breed % 2} 1")
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    dm = build_datamodule(_small("pets", tmp_path, "data.val_size=0"), seed=0)
    assert dm.num_classes == 37 and dm.n_test == 37 and dm.n == 74
    assert np.bincount(dm.splits.pool_labels).tolist() == [2] * 37
    assert dm.splits.test_labels.tolist() == list(range(37))
