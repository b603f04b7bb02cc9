"""Learning-curve families: planted curves (written here in LCDB's own forms) are recovered, a
fit is never worse than the planted parameters, n*(E) matches closed forms, parameters at a
bound are flagged, and the averaged model follows each planted family under realistic noise."""

import numpy as np
import pandas as pd
import pytest

from caulk.analysis.averaging import fit_curve_model
from caulk.analysis.families import FAMILIES, fit_family
from caulk.analysis.models import curve_models
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


#: a realistic design: 7 n, 3 seeds, a seed sd of 0.02 at n=10 falling as n^-0.3
REAL_NS = np.array([16, 32, 64, 128, 256, 512, 1024], float)
REAL_SE = 0.02 * (REAL_NS / 10) ** -0.3 / np.sqrt(3)


def _averaged_trials(name: str, trials: int = 24) -> tuple[list[float], list[tuple[float, float]]]:
    """Per noisy trial of a planted family: the RMS of (model - truth) / se over the measured n,
    and the 95% band of the model's error at 4x the largest n."""
    rng = np.random.default_rng(5)
    truth, far = PLANTED[name](REAL_NS), np.full(100, 4 * REAL_NS[-1])
    rms, bands = [], []
    for trial in range(trials):
        runs = truth + REAL_SE * np.sqrt(3) * rng.standard_normal((3, len(REAL_NS)))
        e, sd = runs.mean(0), runs.std(0, ddof=1)
        model = fit_curve_model(REAL_NS, e, sd, np.full(7, 3.0), replicates=100, rng_seed=trial)
        rms.append(float(np.sqrt(np.mean(((model.predict(REAL_NS) - truth) / REAL_SE) ** 2))))
        bands.append(tuple(np.quantile(model.draws.predict(far), [0.025, 0.975])))
    return rms, bands


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_the_averaged_model_follows_every_planted_family(name):
    """Each LCDB family planted under realistic seed noise (pow4 and mmf4 included), 24 trials:
    the averaged model's line is about as close to the truth as a least-squares fit of the
    right family (RMS of (model - truth) / se about sqrt(3/7) = 0.65 on average; a line off by
    2 se gives 2, allowed in one trial), and, but for exp3, its 95% band at 4x the largest n
    holds the truth in at least 21 of 24 trials (at a true 95%, fewer happens 3% of the time).
    exp3 is the known miss (docs/analysis.md#coverage): at 4x it sits on its floor, and the
    band, from families that keep falling, ends just below it in about half the trials."""
    rms, bands = _averaged_trials(name)
    assert np.mean(rms) < 1.0 and sum(r > 2.1 for r in rms) <= 1, rms
    if name != "exp3":
        far = PLANTED[name](np.array([4 * REAL_NS[-1]]))[0]
        assert sum(lo <= far <= hi for lo, hi in bands) >= 21, (far, bands)


def test_a_refit_with_a_point_added_keeps_the_other_points_draws():
    """Common random numbers: refitting a planted pow3 curve with one more n (its data on the
    fitted line, the seed sd of its neighbours) leaves each n's bootstrap noise where it was,
    so the two fits' n* draws move together replicate by replicate (the adaptive rule compares
    such refits); with the noise drawn afresh they would be unrelated."""
    rng = np.random.default_rng(3)
    ns = REAL_NS[:6]
    runs = PLANTED["pow3"](ns) + 0.02 * (ns / 10) ** -0.3 * rng.standard_normal((3, len(ns)))
    e, sd, seeds = runs.mean(0), runs.std(0, ddof=1), np.full(len(ns), 3.0)
    before = fit_curve_model(ns, e, sd, seeds, replicates=200)
    target = float(before.predict(np.array([100.0]))[0])
    extra = np.sqrt(ns[3] * ns[4])
    after = fit_curve_model(
        np.append(ns, extra),
        np.append(e, before.predict(np.array([extra]))),
        np.append(sd, np.sqrt(sd[3] * sd[4])),
        np.append(seeds, 3.0),
        replicates=200,
    )
    pair = np.log([before.n_star_draws(target), after.n_star_draws(target)])
    pair = pair[:, np.isfinite(pair).all(0)]
    assert pair.shape[1] > 150
    assert np.corrcoef(pair)[0, 1] > 0.5, np.corrcoef(pair)[0, 1]


def test_two_curves_of_one_analysis_draw_independent_noise():
    """Two curves measured at the same n with the same data: each curve's draws come from its
    own stream, so their n* draws are unrelated replicate by replicate (a ratio's interval,
    taken from the draws in pairs, is not narrowed by noise the curves share); each curve's
    draws are the same in every analysis of it."""
    rng = np.random.default_rng(4)
    ns = REAL_NS[:6]
    errors = PLANTED["pow3"](ns) + 0.02 * (ns / 10) ** -0.3 * rng.standard_normal((3, len(ns)))
    rows = [
        {"curve": c, "n": n, "seed": s, "test_error": errors[s, i]}
        for c in ("a", "b")
        for s in range(3)
        for i, n in enumerate(ns)
    ]
    frame = pd.DataFrame(rows)
    models = curve_models(frame, ["curve"], "test_error", replicates=200)
    target = float(models[("a",)].predict(np.array([100.0]))[0])
    pair = np.log([models[(c,)].n_star_draws(target) for c in ("a", "b")])
    pair = pair[:, np.isfinite(pair).all(0)]
    assert pair.shape[1] > 150 and abs(np.corrcoef(pair)[0, 1]) < 0.3, np.corrcoef(pair)
    alone = curve_models(frame[frame.curve == "a"], ["curve"], "test_error", replicates=200)
    assert np.array_equal(alone[("a",)].n_star_draws(target), models[("a",)].n_star_draws(target))


def test_bad_input_is_a_one_line_error():
    with pytest.raises(CaulkConfigError, match="unknown curve family 'pow9'"):
        fit_family("pow9", NS, PLANTED["pow3"](NS))
    with pytest.raises(
        CaulkConfigError, match="mmf4 has 4 parameters: need >= 4 distinct n, got 3"
    ):
        fit_family("mmf4", NS[:3], PLANTED["mmf4"](NS[:3]))
