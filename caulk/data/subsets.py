"""Nested, stratified training subsets of size n.

For one seed, ``nested_stratified_order`` fixes an order of the training pool; the subset of
size n is its first n entries. So subsets are nested (n=50 is inside n=100), every class appears
once n >= number of classes, and class counts track the pool's class proportions.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from caulk.config import is_int
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
    if not is_int(n):
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


def _check_positive_int(value: object, key: str) -> int:
    if not is_int(value) or value <= 0:
        raise CaulkConfigError(f"{key} must be a positive integer, got {value!r}")
    return int(value)


def few_shot_subset(
    labels: np.ndarray, shots: int, seed: int, key: str = "data.shots"
) -> np.ndarray:
    """Indices of exactly ``shots`` examples of every class (n = shots * classes), nested in shots.

    Class c's examples are taken in the order ``nested_stratified_order`` gives them for ``seed``,
    so k=1 is inside k=5 for one seed and, on a balanced pool, the k-shot subset equals the global
    subset of size k * classes.
    """
    labels = np.asarray(labels)
    shots = _check_positive_int(shots, key)
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) and counts.min() < shots:
        c = classes[np.argmin(counts)]
        raise CaulkConfigError(
            f"{key}={shots} needs {shots} examples of every class, but class {c} has only "
            f"{counts.min()} in the training pool"
        )
    order = nested_stratified_order(labels, seed)
    ordered_labels = labels[order]
    rank_in_class = np.empty(len(order), dtype=int)
    for c in classes:
        positions = np.flatnonzero(ordered_labels == c)
        rank_in_class[positions] = np.arange(len(positions))
    return order[rank_in_class < shots]


VTAB1K_TRAIN, VTAB1K_VAL = 800, 200


def vtab1k_split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """VTAB-1k: (800 train, 200 val) indices, disjoint, fixed by ``seed``; together the 1000.

    The 1000 are the first 1000 of the pool's stratified order; the 200 validation examples are
    a stratified draw from those 1000. Tune on train/val, then train the final run on all 1000.
    """
    labels = np.asarray(labels)
    total = VTAB1K_TRAIN + VTAB1K_VAL
    if len(labels) < total:
        raise CaulkConfigError(
            f"data.protocol=vtab1k needs {total} training examples, the pool has {len(labels)}"
        )
    thousand = nested_stratified_order(labels, seed + 20_011)[:total]
    inner = nested_stratified_order(labels[thousand], seed + 20_021)
    val = thousand[inner[:VTAB1K_VAL]]
    train = thousand[inner[VTAB1K_VAL:]]
    return np.sort(train), np.sort(val)


def seeded_test_split(
    labels: np.ndarray,
    seed: int,
    test_fraction: float | None = None,
    train_per_class: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(pool, test) indices for a dataset without an official test split, fixed by ``seed``.

    Either a stratified ``test_fraction`` (scikit-learn's split, as for digits) or the classic
    ``train_per_class`` protocol (e.g. Caltech-101: 30 per class train, the rest test).
    """
    labels = np.asarray(labels)
    idx = np.arange(len(labels))
    if (test_fraction is None) == (train_per_class is None):
        raise CaulkConfigError(
            "a seeded test split needs exactly one of data.test_fraction and data.train_per_class"
        )
    if train_per_class is not None:
        pool = np.sort(few_shot_subset(labels, train_per_class, seed, "data.train_per_class"))
        return pool, np.setdiff1d(idx, pool)
    if not 0.0 < float(test_fraction) < 1.0:
        raise CaulkConfigError(f"data.test_fraction must be in (0, 1), got {test_fraction!r}")
    pool, test = train_test_split(
        idx, test_size=float(test_fraction), random_state=seed, stratify=labels
    )
    return np.sort(pool), np.sort(test)
