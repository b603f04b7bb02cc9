"""Per-row test outcomes in every engine's record, and the bootstrap of the test rows that puts
the test split's own sampling error into the answers (``caulk.outcomes``,
``caulk.analysis.test_rows``)."""

import numpy as np
import pandas as pd
import pytest

from caulk.analysis.answers import sample_complexity
from caulk.analysis.test_rows import row_resample_shift, row_weights
from caulk.data import load_splits
from caulk.outcomes import decode_outcomes, encode_outcomes, split_digest
from caulk.train import train_curve

ENGINES = {
    "ridge solver": ["++peft.solver=ridge"],
    "lbfgs solver": ["++peft.solver=lbfgs"],
    "batched heads": [],
    "light loop": ["cache.batch_points=false"],
    "lightning": ["cache.features=false"],
}


def test_outcomes_round_trip_any_length():
    rng = np.random.default_rng(0)
    for rows in (1, 7, 8, 9, 450):
        bits = rng.random(rows) < 0.6
        text = encode_outcomes(bits)
        assert text.startswith(f"{rows}:") and np.array_equal(decode_outcomes(text), bits)
    with pytest.raises(ValueError, match="<rows>:<base64>"):
        decode_outcomes("garbage")


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_every_engine_records_which_test_rows_it_got_right(fast_cfg, tmp_path, engine):
    """The outcomes agree with the recorded error and count, in every engine; every engine
    names the same test split."""
    cfg = fast_cfg("curve.n=[20,40]", "curve.seeds=[0]", *ENGINES[engine], out=tmp_path / "c")
    records = train_curve(cfg)
    for r in records:
        correct = decode_outcomes(r["test_correct"])
        assert len(correct) == r["n_test"] == 450
        assert 1 - correct.mean() == pytest.approx(r["test_error"], abs=1e-6)
    labels = load_splits(cfg.data).test_labels  # the split, read on its own
    assert {r["test_set"] for r in records} == {split_digest(labels)}


def _points(correct: np.ndarray, ns: list[int], test_set: str = "t") -> pd.DataFrame:
    """A curve's points from a (points, rows) outcome matrix, one seed per (n, row block)."""
    per_n = len(correct) // len(ns)
    return pd.DataFrame(
        {
            "n": np.repeat(ns, per_n),
            "seed": np.tile(np.arange(per_n), len(ns)),
            "test_error": 1 - correct.mean(1),
            "test_correct": [encode_outcomes(c) for c in correct],
            "test_set": test_set,
            "n_test": correct.shape[1],
        }
    )


def test_the_row_resample_moves_each_n_by_the_bootstrap_closed_form():
    """A multinomial resample of T rows moves the seed-mean accuracy vector c at each n by a
    mean-zero amount whose variance is the rows' population variance of c over T."""
    rng = np.random.default_rng(1)
    ns, rows = [10, 40, 160], 450
    p_right = np.repeat([0.4, 0.6, 0.8], 3)[:, None]
    correct = rng.random((9, rows)) < p_right  # 3 n x 3 seeds
    pts = _points(correct, ns)
    weights = row_weights(pts, 4000, 0)
    shift = row_resample_shift(pts, "test_error", weights)
    assert shift.shape == (4000, 3)
    mean_c = np.stack([correct[3 * i : 3 * i + 3].mean(0) for i in range(3)])
    expected = np.sqrt(mean_c.var(axis=1) / rows)
    np.testing.assert_allclose(shift.std(axis=0), expected, rtol=0.06)
    assert np.all(np.abs(shift.mean(axis=0)) < 4 * expected / np.sqrt(4000))
    assert row_resample_shift(pts, "test_loss", weights) is None  # only the error is a row mean
    assert row_resample_shift(pts.assign(test_set="other"), "test_error", weights) is None
    damaged = pts.assign(test_correct=["450:not base64!"] + list(pts["test_correct"][1:]))
    assert row_resample_shift(damaged, "test_error", weights) is None  # seed-only, no crash


def test_curves_on_one_test_split_share_the_resample():
    """Two curves on one split get the same row weights: a curve whose outcomes equal another's
    moves exactly as it does, replicate by replicate (the pairing of a ratio)."""
    rng = np.random.default_rng(2)
    correct = rng.random((6, 300)) < 0.7
    a, b = _points(correct, [10, 20]), _points(correct, [10, 20])
    weights = row_weights(pd.concat([a, b]), 50, 3)
    assert list(weights) == ["t"]
    np.testing.assert_array_equal(
        row_resample_shift(a, "test_error", weights), row_resample_shift(b, "test_error", weights)
    )


def test_the_answer_carries_the_test_split_only_when_the_records_do(fast_cfg, tmp_path):
    """A real ridge-probe curve (5 n x 3 seeds): with its per-row outcomes the n* interval
    widens (the 450 test rows' sampling error joins the seed noise); without them it is the
    seed-only interval of before."""
    cfg = fast_cfg(
        "curve.n=[20,40,80,160,320]", "curve.seeds=[0,1,2]", "++peft.solver=ridge",
        "logger=none", out=tmp_path / "c",
    )  # fmt: skip
    pts = pd.DataFrame(train_curve(cfg)).assign(curve="probe")
    target = float(pts.loc[pts["n"] == 80, "test_error"].mean())
    with_rows = sample_complexity(pts, ["curve"], "test_error", [target], "auto", 300, 0)
    seeds_only = sample_complexity(
        pts.drop(columns=["test_correct"]), ["curve"], "test_error", [target], "auto", 300, 0
    )
    width = [np.log(a["n_star_hi"] / a["n_star_lo"]).iloc[0] for a in (with_rows, seeds_only)]
    assert width[0] > 1.2 * width[1], width
    assert with_rows["n_star"].iloc[0] == pytest.approx(seeds_only["n_star"].iloc[0])
