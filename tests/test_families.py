"""Learning-curve families: planted curves (written here in LCDB's own forms) are recovered, a
fit is never worse than the planted parameters, n*(E) matches closed forms, parameters at a
bound are flagged, and the backtest picks the planted family in most noisy trials."""

import numpy as np
import pytest

from caulk.analysis.families import FAMILIES, backtest, choose_family, fit_family
from caulk.errors import CaulkConfigError

NS = np.array([8, 16, 32, 64, 128, 256, 512, 1024, 2048], float)

#: planted curves in the forms LCDB writes (mmf4 as (a b + c n^d) / (b + n^d)), all falling in n
PLANTED = {
    "pow2": lambda n: 1.2 * n**-0.35,
    "pow3": lambda n: 0.1 + 1.5 * n**-0.5,
    "pow4": lambda n: 0.05 + 2.0 * (n + 50) ** -0.6,
    "exp3": lambda n: 0.1 + 0.5 * np.exp(-n / 300),
    "logpower3": lambda n: 0.6 / (1 + (n / np.exp(4.0)) ** 0.8),
    "mmf4": lambda n: (0.7 * 30 + 0.05 * n**1.2) / (30 + n**1.2),
    "vap3": lambda n: np.exp(-0.5 + 20 / n - 0.3 * np.log(n)),
}


def test_the_registry_has_the_families_lcdb_compares():
    assert set(FAMILIES) == set(PLANTED)


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_each_family_recovers_its_planted_curve_beyond_the_measured_range(name):
    truth = PLANTED[name]
    fit = fit_family(name, NS, truth(NS))
    assert fit.rmse < 1e-4
    far = np.array([4096.0, 16384.0])  # 2x and 8x beyond the largest n: the curve, not the points
    np.testing.assert_allclose(fit.predict(far), truth(far), atol=2e-3)


@pytest.mark.parametrize("name", ["pow4", "exp3", "logpower3", "mmf4", "vap3"])
def test_a_noisy_fit_is_never_worse_than_the_planted_parameters(name):
    """The planted curve is a feasible point of each family, so a global fit's SSE is at most
    the planted curve's SSE on the same noisy data."""
    rng = np.random.default_rng(7)
    truth = PLANTED[name](NS)
    for _ in range(5):
        e = truth * (1 + 0.03 * rng.standard_normal(len(NS)))
        fit = fit_family(name, NS, e)
        assert fit.rmse**2 <= np.mean((truth - e) ** 2) * (1 + 1e-6)


def test_n_star_matches_the_closed_forms():
    a, b, c = 0.1, 1.5, 0.5
    pow3 = fit_family("pow3", NS, a + b * NS**-c)
    for target in (0.4, 0.2, 0.12):
        assert pow3.n_star(target) == pytest.approx(((target - a) / b) ** (-1 / c), rel=1e-4)
    exp3 = fit_family("exp3", NS, PLANTED["exp3"](NS))
    for target in (0.5, 0.3, 0.15):
        assert exp3.n_star(target) == pytest.approx(-300 * np.log((target - 0.1) / 0.5), rel=1e-4)
    logpower3 = fit_family("logpower3", NS, PLANTED["logpower3"](NS))
    for target in (0.4, 0.1, 0.02):
        expected = np.exp(4.0) * (0.6 / target - 1) ** (1 / 0.8)
        assert logpower3.n_star(target) == pytest.approx(expected, rel=1e-4)


def test_a_target_at_or_below_the_asymptote_is_never_reached():
    fit = fit_family("pow3", NS, PLANTED["pow3"](NS))
    assert fit.asymptote == pytest.approx(0.1, abs=1e-5)
    assert fit.n_star(0.1) == np.inf and fit.n_star(0.05) == np.inf
    assert np.isfinite(fit.n_star(0.11))


def test_parameters_at_a_bound_are_flagged():
    """A pure power law has no asymptote: pow3's a sits at its bound 0 and says so; a curve
    with a real asymptote flags nothing."""
    assert "a" in fit_family("pow3", NS, PLANTED["pow2"](NS)).at_bound
    assert fit_family("pow3", NS, PLANTED["pow3"](NS)).at_bound == ()
    # mmf4 fitted to a curve without an asymptote: its asymptote c ends at 0
    assert "c" in fit_family("mmf4", NS, PLANTED["logpower3"](NS)).at_bound


@pytest.mark.parametrize("name", ["pow3", "exp3", "logpower3", "vap3"])
def test_the_backtest_picks_the_planted_family_in_most_trials(name):
    noise = 0.002
    rng = np.random.default_rng(11)
    picks = [
        choose_family(backtest(NS, PLANTED[name](NS) + rng.normal(0, noise, len(NS))), noise)
        for _ in range(20)
    ]
    assert picks.count(name) >= 14, picks


def test_the_backtest_scores_a_fit_on_the_smaller_n_at_the_largest_n():
    """Exact pow3 data with the largest n's error raised by 0.05: pow3 fitted on the other n
    predicts the unraised value there, so its backtest error is exactly 0.05."""
    e = PLANTED["pow3"](NS)
    e[-1] += 0.05
    assert backtest(NS, e)["pow3"] == pytest.approx(0.05, abs=1e-5)
    assert backtest(NS, PLANTED["pow3"](NS))["pow3"] == pytest.approx(0.0, abs=1e-5)


def test_a_family_with_more_parameters_than_points_is_not_backtested():
    scores = backtest(NS[:4], PLANTED["pow3"](NS[:4]))
    assert np.isnan(scores["pow4"]) and np.isnan(scores["mmf4"])
    assert np.isfinite(scores["pow3"])


def test_bad_input_is_a_one_line_error():
    with pytest.raises(CaulkConfigError, match="unknown curve family 'pow9'"):
        fit_family("pow9", NS, PLANTED["pow3"](NS))
    with pytest.raises(
        CaulkConfigError, match="mmf4 has 4 parameters: need >= 4 distinct n, got 3"
    ):
        fit_family("mmf4", NS[:3], PLANTED["mmf4"](NS[:3]))
