"""Training-set protocols: VTAB-1k split sizes, few-shot k-per-class subsets, loader settings."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caulk.data import build_datamodule, few_shot_subset, vtab1k_split
from caulk.data.datamodule import loader_settings
from caulk.errors import CaulkConfigError
from tests.conftest import compose_cfg

class_counts = st.lists(st.integers(min_value=1, max_value=30), min_size=2, max_size=10)


def _labels(counts):
    return np.repeat(np.arange(len(counts)), counts)


def _digits(*overrides: str, seed: int = 0):
    return build_datamodule(compose_cfg(list(overrides)).data, seed)


@settings(max_examples=60, deadline=None)
@given(counts=class_counts, seed=st.integers(0, 2**31 - 1), data=st.data())
def test_few_shot_subsets_hold_exactly_k_per_class_and_are_nested(counts, seed, data):
    labels = _labels(counts)
    k_big = data.draw(st.integers(1, min(counts)))
    k_small = data.draw(st.integers(1, k_big))
    small, big = few_shot_subset(labels, k_small, seed), few_shot_subset(labels, k_big, seed)
    assert np.bincount(labels[small], minlength=len(counts)).tolist() == [k_small] * len(counts)
    assert len(set(big.tolist())) == k_big * len(counts)
    assert set(small.tolist()) <= set(big.tolist())


def test_few_shot_asks_more_than_a_class_has():
    with pytest.raises(CaulkConfigError, match="class 1 has only 3 in the training pool"):
        few_shot_subset(_labels([5, 3, 9]), 4, seed=0)


@settings(max_examples=30, deadline=None)
@given(counts=st.lists(st.integers(150, 600), min_size=7, max_size=12), seed=st.integers(0, 10**6))
def test_vtab1k_split_is_800_plus_200_disjoint_and_fixed_by_seed(counts, seed):
    labels = _labels(counts)
    train, val = vtab1k_split(labels, seed)
    assert (len(train), len(val)) == (800, 200)
    thousand = np.concatenate([train, val])
    assert len(set(thousand.tolist())) == 1000
    # val is a stratified draw from the 1000 (Webster apportionment, as in test_subsets)
    in_thousand = np.bincount(labels[thousand], minlength=len(counts)).astype(float)
    in_val = np.bincount(labels[val], minlength=len(counts))
    assert np.all(in_val >= 1)
    grown = in_val > 1
    bound = ((in_val + 0.5) / in_thousand).min() + 1e-12
    assert ((in_val[grown] - 0.5) / in_thousand[grown]).max() <= bound
    again_train, again_val = vtab1k_split(labels, seed)
    assert np.array_equal(train, again_train) and np.array_equal(val, again_val)


def test_vtab1k_needs_1000_examples():
    with pytest.raises(CaulkConfigError, match="needs 1000 training examples, the pool has 999"):
        vtab1k_split(_labels([333, 333, 333]), 0)


def test_vtab1k_protocol_on_digits_tune_then_final():
    tune = _digits("data.protocol=vtab1k", seed=3)
    assert (tune.n, len(tune.train_idx), len(tune.val_idx)) == (800, 800, 200)
    assert not set(tune.train_idx) & set(tune.val_idx)
    assert tune.n_test == 450  # the official (here: digits' fixed) test split, in full
    final = _digits("data.protocol=vtab1k", "data.vtab1k_stage=final", seed=7)
    assert (final.n, len(final.val_idx)) == (1000, 0)
    assert set(final.train_idx) == set(tune.train_idx) | set(tune.val_idx)  # the same 1000
    assert final.val_dataloader() == []
    other_split = _digits("data.protocol=vtab1k", "data.split_seed=1")
    assert set(other_split.train_idx) != set(tune.train_idx)


def test_vtab1k_rejects_an_explicit_other_n():
    with pytest.raises(CaulkConfigError, match="data.n=500 conflicts with data.protocol=vtab1k"):
        _digits("data.protocol=vtab1k", "data.n=500")
    assert _digits("data.protocol=vtab1k", "data.n=800").n == 800


def test_few_shot_protocol_on_digits():
    one = _digits("data.protocol=few_shot", "data.shots=1", seed=2)
    five = _digits("data.protocol=few_shot", "data.shots=5", seed=2)
    labels = one.splits.pool_labels
    assert one.n == 10 and five.n == 50
    assert np.bincount(labels[five.train_idx], minlength=10).tolist() == [5] * 10
    assert set(one.train_idx) <= set(five.train_idx)
    assert not set(five.train_idx) & set(five.val_idx)
    assert np.array_equal(five.val_idx, _digits().val_idx)  # same validation as the n-curves


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.protocol=few_shot"], "data.shots must be a positive integer, got None"),
        (["data.protocol=few_shot", "data.shots=0"], "data.shots must be a positive integer"),
        (["data.protocol=few_shot", "data.shots=500"], "needs 500 examples of every class"),
        (["data.protocol=few_shot", "data.shots=2", "data.n=30"], "conflicts with"),
        (["data.protocol=k_shot"], "data.protocol must be one of subset, few_shot, vtab1k"),
        (["data.protocol=vtab1k", "data.vtab1k_stage=test"], "data.vtab1k_stage must be one of"),
        (["data.val_policy=official"], "digits has no official validation split"),
        (["data.num_workers=-1"], "data.num_workers must be 'auto' or an integer >= 0"),
        (["data.persistent_workers=true"], "needs data.num_workers > 0"),
        (["data.pin_memory=maybe"], "data.pin_memory must be true, false or 'auto'"),
        (["+data.augment=randaugment"], "data.augment applies to image datasets"),
    ],
)
def test_bad_protocol_input_is_one_line(overrides, message):
    with pytest.raises(CaulkConfigError, match=message) as err:
        _digits(*overrides)
    assert "\n" not in str(err.value)


def test_loader_settings_defaults():
    image_cfg = compose_cfg(["data=cifar10"]).data
    auto = loader_settings(image_cfg, in_memory=False)
    assert auto["persistent_workers"] == (auto["num_workers"] > 0)
    assert auto["num_workers"] <= 8
    assert loader_settings(image_cfg, in_memory=True)["num_workers"] == 0
    digits = loader_settings(compose_cfg([]).data, in_memory=True)
    assert digits == {
        "num_workers": 0,
        "pin_memory": digits["pin_memory"],
        "persistent_workers": False,
    }
    explicit = compose_cfg(["data=cifar10", "data.num_workers=3", "data.pin_memory=false"]).data
    assert loader_settings(explicit, in_memory=False) == {
        "num_workers": 3,
        "pin_memory": False,
        "persistent_workers": True,
    }
