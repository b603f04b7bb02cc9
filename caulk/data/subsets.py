"""Nested, stratified training subsets of size n.

For one seed, ``nested_stratified_order`` fixes an order of the training pool; the subset of
size n is its first n entries. So subsets are nested (n=50 is inside n=100), every class appears
once n >= number of classes, and class counts track the pool's class proportions.
"""

from __future__ import annotations

import numpy as np

from caulk.errors import CaulkConfigError


def nested_stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """A seeded order of ``range(len(labels))`` whose every prefix is stratified.

    First one example of each class (classes in random order), then the remaining examples by
    Sainte-Lague apportionment: the j-th example of class c gets the key (j + 1/2) / N_c, so any
    prefix holds each class in proportion to its pool frequency (ties broken at random).
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    first, rest_idx, rest_key = [], [], []
    for c in rng.permutation(classes):
        members = rng.permutation(np.flatnonzero(labels == c))
        first.append(members[0])
        j = np.arange(1, len(members))
        rest_idx.append(members[1:])
        rest_key.append((j + 0.5) / len(members))
    rest_idx_a = np.concatenate(rest_idx) if rest_idx else np.empty(0, dtype=int)
    rest_key_a = np.concatenate(rest_key) if rest_key else np.empty(0)
    tiebreak = rng.random(len(rest_idx_a))
    rest_order = np.lexsort((tiebreak, rest_key_a))
    return np.concatenate([np.asarray(first, dtype=int), rest_idx_a[rest_order]]).astype(int)


def check_n(n: int, pool_size: int, num_classes: int, stratify: bool) -> None:
    """Reject an n that cannot give the promised subset (raises CaulkConfigError)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise CaulkConfigError(f"data.n must be a positive integer or null, got {n!r}")
    if n <= 0:
        raise CaulkConfigError(f"data.n must be positive, got {n}")
    if n > pool_size:
        raise CaulkConfigError(
            f"data.n={n} is larger than the training pool ({pool_size} examples)"
        )
    if stratify and n < num_classes:
        raise CaulkConfigError(
            f"data.n={n} is smaller than the number of classes ({num_classes}); a stratified subset "
            f"needs n >= {num_classes} (or data.stratify=false)"
        )


def stratified_subset(labels: np.ndarray, n: int, seed: int, stratify: bool = True) -> np.ndarray:
    """Indices into the pool of the size-n training subset for ``seed`` (nested in n)."""
    labels = np.asarray(labels)
    check_n(n, len(labels), len(np.unique(labels)), stratify)
    if stratify:
        return nested_stratified_order(labels, seed)[:n]
    return np.random.default_rng(seed).permutation(len(labels))[:n]
