"""Training subsets of size n: nested, stratified, exact, deterministic per seed."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caulk.data import nested_stratified_order, stratified_subset
from caulk.data.datamodule import build_datamodule
from caulk.errors import CaulkConfigError
from tests.conftest import compose_cfg

class_counts = st.lists(st.integers(min_value=1, max_value=40), min_size=2, max_size=12)


def _labels(counts):
    return np.repeat(np.arange(len(counts)), counts)


@settings(max_examples=80, deadline=None)
@given(counts=class_counts, seed=st.integers(0, 2**31 - 1), data=st.data())
def test_subsets_are_nested_exact_and_cover_all_classes(counts, seed, data):
    labels = _labels(counts)
    k = len(counts)
    n_small = data.draw(st.integers(k, len(labels)))
    n_big = data.draw(st.integers(n_small, len(labels)))
    small = stratified_subset(labels, n_small, seed)
    big = stratified_subset(labels, n_big, seed)
    assert len(small) == n_small and len(np.unique(small)) == n_small
    assert set(small) <= set(big)
    assert set(np.unique(labels[small])) == set(range(k))


@settings(max_examples=80, deadline=None)
@given(counts=class_counts, seed=st.integers(0, 2**31 - 1))
def test_every_prefix_is_apportioned_in_proportion_to_the_pool(counts, seed):
    """Webster/Sainte-Lague property: one common factor t with count_c ~ t * N_c for all classes.

    Beyond the one example forced per class, class c holds its j-th example only if
    (j + 1/2) / N_c is no larger than every class's next key, so
    max_{c: count>1} (count_c - 1/2) / N_c <= min_c (count_c + 1/2) / N_c.
    """
    labels = _labels(counts)
    order = nested_stratified_order(labels, seed)
    assert sorted(order) == list(range(len(labels)))  # a permutation of the pool
    sizes = np.asarray(counts, dtype=float)
    k = len(counts)
    for n in range(k, len(labels) + 1):
        got = np.bincount(labels[order[:n]], minlength=k)
        assert np.all(got >= 1)
        grown = got > 1
        if grown.any():
            assert ((got[grown] - 0.5) / sizes[grown]).max() <= ((got + 0.5) / sizes).min() + 1e-12


def test_balanced_pool_prefixes_are_balanced():
    labels = _labels([30] * 10)
    order = nested_stratified_order(labels, seed=3)
    for n in (10, 20, 50, 100, 300):
        counts = np.bincount(labels[order[:n]], minlength=10)
        assert counts.max() - counts.min() <= 1


def test_seed_determines_the_subset():
    labels = _labels([20] * 5)
    a = stratified_subset(labels, 25, seed=1)
    assert np.array_equal(a, stratified_subset(labels, 25, seed=1))
    assert not np.array_equal(np.sort(a), np.sort(stratified_subset(labels, 25, seed=2)))


@pytest.mark.parametrize(
    ("n", "message"),
    [
        (0, "must be positive"),
        (-3, "must be positive"),
        (5, "smaller than the number of classes"),
        (10_000, "larger than the training pool"),
    ],
)
def test_bad_n_is_rejected(n, message):
    with pytest.raises(CaulkConfigError, match=message):
        stratified_subset(_labels([10] * 10), n, seed=0)


def test_datamodule_splits_are_disjoint_and_test_is_complete():
    cfg = compose_cfg(["data.n=60"])
    dm = build_datamodule(cfg.data, seed=4)
    train, val = set(dm.train_idx), set(dm.val_idx)
    assert len(train) == 60 and len(val) == cfg.data.val_size
    assert not train & val
    assert set(dm.train_pool_idx) | val == set(range(len(dm.splits.pool_y)))
    assert dm.n_test == len(dm.splits.test_y) == 450  # 25% of the 1797 digits, stratified
    assert len(dm.splits.pool_y) + dm.n_test == 1797
    labels = dm.splits.pool_y.numpy()[dm.train_idx]
    assert np.bincount(labels, minlength=10).min() >= 5
    # the validation hold-out does not depend on n or on the run seed
    other = build_datamodule(compose_cfg(["data.n=200"]).data, seed=9)
    assert np.array_equal(other.val_idx, dm.val_idx)
    assert set(dm.train_idx) <= set(
        build_datamodule(compose_cfg(["data.n=200"]).data, seed=4).train_idx
    )
