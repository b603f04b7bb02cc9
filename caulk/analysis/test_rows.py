"""The test set's own sampling error in the answers: a bootstrap of the test rows.

Every point of a sweep is scored on the same test split, so its error carries that split's
sampling error (about 0.022 at error 0.3 on 450 rows), shared by every n and every curve on it:
seeds cannot show it. Records that keep their per-row outcomes (``test_correct``, see
:mod:`caulk.outcomes`) let the analysis resample the rows: replicate r reweighs the rows by one
multinomial draw, the same draw for every curve on that test split (so a ratio between two curves
scored on the same rows is paired: what the rows do to both cancels in it), and shifts each n's
seed-mean error by what the reweighing does to it. The curve model's bootstrap adds that shift
to its seed noise (:func:`caulk.analysis.averaging.fit_curve_model`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from caulk.outcomes import decode_outcomes

#: offsets the test-row resamples' random stream from the seed noise's (same --seed)
STREAM = 7919


def row_weights(points: pd.DataFrame, replicates: int, rng_seed: int) -> dict[str, np.ndarray]:
    """Per test split named in ``points`` (``test_set`` -> its rows): (R, rows) weights, a
    multinomial resample of the rows over their count, shared by every curve on that split."""
    if "test_set" not in points or "n_test" not in points or replicates < 1:
        return {}
    sets = points.dropna(subset=["test_set"]).groupby("test_set")["n_test"].first()
    rng = np.random.default_rng(rng_seed + STREAM)
    return {
        name: rng.multinomial(int(rows), np.full(int(rows), 1 / int(rows)), size=replicates)
        / int(rows)
        for name, rows in sorted(sets.items())
    }


def row_resample_shift(
    pts: pd.DataFrame, metric: str, weights: dict[str, np.ndarray]
) -> np.ndarray | None:
    """(R, distinct n ascending): how each test-row resample moves the seed-mean error at each
    n. None (no test-row term) unless the metric is ``test_error`` and every point of the curve
    kept its outcomes on one test split that ``weights`` has."""
    if metric != "test_error" or "test_correct" not in pts or "test_set" not in pts:
        return None
    if pts["test_correct"].isna().any() or pts["test_set"].nunique(dropna=False) != 1:
        return None
    w = weights.get(pts["test_set"].iloc[0])
    if w is None:
        return None
    try:
        outcomes = [decode_outcomes(text) for text in pts["test_correct"]]
    except ValueError:  # a damaged record: its curve keeps the seed-only draws
        return None
    if any(len(o) != w.shape[1] for o in outcomes):
        return None
    correct = np.stack(outcomes).astype(float)
    by_n = pd.DataFrame(correct).groupby(pts["n"].to_numpy()).mean().sort_index().to_numpy()
    return by_n.mean(axis=1)[None, :] - w @ by_n.T  # error = 1 - accuracy
