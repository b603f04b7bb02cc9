"""An interval is a promise: caulk's "95%" n* intervals, checked by simulation with the truth known
(``benchmarks/coverage.py`` runs the long version and prints the whole table)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from coverage import TRUTHS, coverage_rows, seed_sd, summarise, true_n_star  # noqa: E402

from caulk.analysis.answers import ratios, sample_complexity  # noqa: E402


def test_the_planted_targets_are_reached_where_the_design_says():
    """The design's own truth: each target error is the planted curve's at 200 and at 2560."""
    for truth, curve in TRUTHS.items():
        assert true_n_star(truth, float(curve(200.0))) == pytest.approx(200.0, rel=1e-6)
        assert true_n_star(truth, float(curve(2560.0))) == pytest.approx(2560.0, rel=1e-6)


@pytest.mark.parametrize("seeds", [3, 5])
def test_95_percent_intervals_cover_planted_truths_between_90_and_99_percent(seeds):
    """Five truth families (the averaged model is misspecified for most of them), targets inside
    the measured n and 4x beyond the largest: the pooled coverage lies in [0.90, 0.99] and no
    answer calls a reachable target unreachable."""
    rows = coverage_rows(list(TRUTHS), seeds, trials=6, replicates=200, family="auto")
    table = summarise(rows)
    pooled = table[table["truth"] == "pooled"].set_index("target")
    print(table.to_string(index=False))
    assert (pooled["cases"] == 30).all()
    assert pooled["coverage"].between(0.90, 0.99).all(), pooled
    assert (rows["status"] != "unreachable").all()
    assert pooled.loc["in range", "median_log2"] < 0.2  # inside the data: within 15%


def test_a_floor_above_the_target_is_unreachable_and_a_near_one_not_determinable():
    """Unreachable only when the data say so: a curve flat at 0.30 for error 0.10 is
    unreachable; a curve still falling towards a floor near the target is not determinable or
    answered, never unreachable."""
    ns = np.array([10, 20, 40, 80, 160, 320, 640], float)
    rng = np.random.default_rng(3)

    def points(curve):
        return pd.DataFrame(
            [
                {"curve": "c", "n": n, "seed": s, "test_error": curve(n) + 0.002 * rng.normal()}
                for n in ns
                for s in range(5)
            ]
        )

    flat = sample_complexity(points(lambda n: 0.3 + 0.5 * n**-1.5), ["curve"], "test_error", [0.1])
    assert flat["status"].iloc[0] == "unreachable" and flat["n_star"].iloc[0] == np.inf
    assert "unreachable: the curve levels off at 0.3" in flat["note"].iloc[0]
    falling = sample_complexity(
        points(lambda n: 0.2 + 0.6 * n**-0.3), ["curve"], "test_error", [0.205]
    )
    assert falling["status"].iloc[0] in ("ok", "not_determinable")
    if falling["status"].iloc[0] == "not_determinable":
        assert np.isnan(falling["n_star"].iloc[0])
        assert "not determinable from these points" in falling["note"].iloc[0]


def _ratio_covers(truth: str, trial: int) -> bool:
    """Two planted curves on one fixed grid (7 log-spaced n in [10, 5120] x 3 seeds, their own
    seed noise): the baseline follows the truth, the curve reaches each error at a third of
    its n. Whether the ratio's 95% interval at the baseline's error at n = 200 holds the true
    ratio 3."""
    curve, ns = TRUTHS[truth], np.unique(np.round(np.geomspace(10, 5120, 7)))
    rng = np.random.default_rng([trial, sorted(TRUTHS).index(truth), 7])
    rows = [
        {"curve": name, "n": n, "seed": s,
         "test_error": float(curve(scale * n) + seed_sd(np.array(n)) * rng.standard_normal())}
        for name, scale in (("baseline", 1.0), ("curve", 3.0))
        for n in ns
        for s in range(3)
    ]  # fmt: skip
    answers = sample_complexity(pd.DataFrame(rows), ["curve"], "test_error", [curve(200.0)])
    ratio = ratios(answers, ["curve"], {"curve": "baseline"}).iloc[0]
    return bool(ratio["ratio_lo"] <= 3.0 <= ratio["ratio_hi"])


@pytest.mark.slow
def test_95_percent_ratio_intervals_cover_a_planted_ratio():
    """The report's n*(baseline) / n*(curve) interval on fixed grids, the true ratio 3: over
    60 trials of the five truths it covers in 90-100% of them. (Before each curve drew its
    noise from its own stream, both curves got the same bootstrap noise, their n* draws moved
    together, and it covered in 51 of these 60.)"""
    covered = np.mean([_ratio_covers(truth, t) for truth in TRUTHS for t in range(12)])
    assert 0.90 <= covered <= 1.0, covered
