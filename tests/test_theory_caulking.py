"""Caulking experiment: the fitted downstream rate improves with the source size m."""

from __future__ import annotations

import json

import numpy as np
import pytest

from caulk.errors import CaulkConfigError
from caulk.theory import caulking, rates
from tests.test_theory_linear_teacher import theory_cfg

SMALL = ["m=[0,20,200,20000]", "n=[50,100,200,400,800]", "trials=4", "n_test=400"]


def test_rate_fits_recover_known_power_laws():
    ns = np.array([10, 20, 40, 80, 160, 320, 640])
    assert rates.loglog_rate(ns, 3.0 * ns**-0.5) == pytest.approx(0.5)
    fit = rates.power_law_fit(ns, 0.1 + 2.0 * ns**-0.7)
    assert fit == pytest.approx({"a": 0.1, "b": 2.0, "c": 0.7}, rel=1e-4)
    assert rates.sample_complexity([10, 20, 40], [0.5, 0.2, 0.1], 0.25) == 20
    assert rates.sample_complexity([10, 20, 40], [0.5, 0.2, 0.3], 0.25) is None


def test_fitted_rate_increases_with_m(tmp_path):
    records = caulking.run(theory_cfg("caulking", tmp_path, *SMALL))
    fitted = json.loads((tmp_path / "rates.json").read_text())
    rate = {int(m): fit["loglog_rate"] for m, fit in fitted.items()}
    assert rate[20] < rate[200] < rate[20000]
    # Good features beat the fixed-feature baseline (raw x, D = 6) on rate ...
    assert rate[20000] > rate[0] + 0.15
    # ... and on error at the largest n; the features themselves improve with m.
    by = {(r["m"], r["n"]): r for r in records}
    assert by[(20000, 800)]["excess_risk"] < 0.5 * by[(0, 800)]["excess_risk"]
    angle = [by[(m, 800)]["feature_sin2_angle"] for m in (20, 200, 20000)]
    assert angle[0] > angle[1] > angle[2]
    # The in-package fit agrees with refitting the records on disk.
    for m in (0, 20, 200, 20000):
        ns = [50, 100, 200, 400, 800]
        errors = [by[(m, n)]["excess_risk"] for n in ns]
        assert rate[m] == pytest.approx(rates.loglog_rate(ns, errors))
    record = json.loads((tmp_path / "m200" / "n400" / "record.json").read_text())
    assert record["kind"] == "caulking" and record["status"] == "ok"
    assert record["m"] == 200 and record["n"] == 400 and record["theory"] is None
    assert by[(0, 50)]["features"] == "raw" and by[(0, 50)]["adapter_dim"] == 6


def test_same_seed_same_numbers(tmp_path):
    args = ["m=[200]", "n=[50,100,200]", "trials=2", "n_test=100"]
    first = caulking.run(theory_cfg("caulking", tmp_path / "a", *args))
    second = caulking.run(theory_cfg("caulking", tmp_path / "b", *args))
    assert [r["excess_risk"] for r in first] == [r["excess_risk"] for r in second]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("m=[0,3] adapter_dim=4", "every m must be 0"),
        ("adapter_dim=5", "adapter_dim must be in"),
        ("k=6", "k must be in"),
    ],
)
def test_bad_config_is_one_line_error_and_writes_nothing(tmp_path, override, message):
    out = tmp_path / "run"
    with pytest.raises(CaulkConfigError, match=message):
        caulking.run(theory_cfg("caulking", out, *override.split()))
    assert not out.exists()
