"""Figures and report fit for a paper (issue #17 §3): checked on the matplotlib objects, on the
files written, and on report.html as laid out by a real headless browser."""

import itertools

import matplotlib.colors
import numpy as np
import pandas as pd
import pytest
from matplotlib.lines import Line2D
from PIL import Image
from scipy import stats

from caulk.analysis.answers import sample_complexity
from caulk.analysis.fits import fit_groups
from caulk.analysis.models import model_table
from caulk.analysis.plots import curves_figure, exponents_figure
from caulk.analysis.report import write_report
from caulk.analysis.summaries import answer_sentences, comparisons, ratio_sentences
from caulk.analyze import main
from caulk.run.record import write_json_atomic
from tests.browser import measure_page, needs_browser

KEYS = ["data", "model", "weights", "source_m", "peft"]
#: listed out of size order on purpose: the figure must order them by parameter count
SIZES = {"vit_nano": 1_200_000, "vit_femto": 45_000, "vit_micro": 3_600_000, "vit_pico": 200_000}


def _points(ns=(20, 30, 40, 60, 80), seeds=3) -> pd.DataFrame:
    """vit_pico over m in {0, 250, 1000, 4000} x {linear, lora}; other models at m=4000."""
    rng = np.random.default_rng(0)
    rows = []
    for model, size in SIZES.items():
        for peft, m in itertools.product(
            ("linear", "lora"), (0, 250, 1000, 4000) if model == "vit_pico" else (4000,)
        ):
            for n, seed in itertools.product(ns, range(seeds)):
                err = 0.05 + 2 * n ** -(0.3 + m / 1e4) + rng.normal(0, 0.004)
                rows.append(
                    dict(data="digits", model=model, weights="zoo", source_m=m, peft=peft,
                         n=n, seed=seed, backbone_params=size, test_error=err)
                )  # fmt: skip
    return pd.DataFrame(rows)


def _fits(points: pd.DataFrame) -> pd.DataFrame:
    """Hand-made fits: pow3 models with rate = c = 0.1 + index/100, so every label's rate is
    known here."""
    curves = points.drop_duplicates(KEYS)[[*KEYS, "backbone_params"]].reset_index(drop=True)
    c = 0.1 + np.arange(len(curves)) / 100
    return curves.assign(
        a=0.05, b=2.0, c=c, c_lo=c - 0.05, c_hi=c + 0.05, message="", family="pow3", rate=c,
        rate_lo=c - 0.05, rate_hi=c + 0.05,
    )  # fmt: skip


def _legend_entries(fig) -> list[tuple[str, Line2D]]:
    (legend,) = fig.legends
    return [
        (t.get_text(), h) for t, h in zip(legend.get_texts(), legend.legend_handles, strict=True)
    ]


def test_error_vs_n_has_a_distinct_colour_per_model_in_size_order_and_one_entry_per_curve():
    points = _points()
    fits = _fits(points)
    entries = _legend_entries(curves_figure(points, fits, KEYS, "test_error"))
    assert len(entries) == len(fits)  # one legend entry per curve, nothing else
    by_model = {}
    for text, handle in entries:
        model = text.split(" · ")[0]
        by_model.setdefault(model, set()).add(matplotlib.colors.to_hex(handle.get_color()))
    assert list(by_model) == sorted(SIZES, key=SIZES.get)  # legend ordered by parameters
    assert all(len(colours) == 1 for colours in by_model.values())
    rgb = [np.array(matplotlib.colors.to_rgb(next(iter(c)))) for c in by_model.values()]
    assert min(np.linalg.norm(a - b) for a, b in itertools.combinations(rgb, 2)) > 0.25
    pico = [(h.get_marker(), h.get_linestyle()) for t, h in entries if t.startswith("vit_pico")]
    assert len(set(pico)) == 8  # the 8 pico curves (4 m x 2 pefts) all look different


def test_legend_labels_are_readable_and_carry_each_curves_fitted_rate():
    points = _points()
    fits = _fits(points)
    texts = [t for t, _ in _legend_entries(curves_figure(points, fits, KEYS, "test_error"))]
    for _, f in fits.iterrows():
        label = f"{f['model']} · {f['peft']} · m={f['source_m']} · rate {f['rate']:.2f} · pow3"
        assert label in texts
    assert not any("digits" in t or "zoo" in t for t in texts)  # constant keys left out


def test_the_line_is_the_curves_model_and_each_n_star_marker_sits_on_it():
    """A curve that saturates exponentially: its model leans on a family other than pow3, the
    line drawn is the model's, the n* the answers give lies on it, and the legend's rate is the
    model's local rate (fits.csv's ``rate``), not pow3's c."""
    ns = np.array([10, 20, 40, 80, 160, 320, 640])
    rows = [
        dict(data="digits", model="vit_pico", weights="zoo", source_m=0, peft="linear", n=n,
             seed=s, backbone_params=1, test_error=0.1 + 0.6 * np.exp(-n / 60) + 0.002 * s)
        for n in ns for s in range(3)
    ]  # fmt: skip
    points = pd.DataFrame(rows)
    fits = fit_groups(points, KEYS, replicates=20).merge(
        model_table(points, KEYS, "test_error", replicates=20), on=KEYS
    )
    weights = dict(w.split(":") for w in fits["model_weights"].iloc[0].split(";"))
    lead = max(weights, key=lambda f: float(weights[f]))
    assert lead != "pow3"
    answers = sample_complexity(points, KEYS, "test_error", [0.3], replicates=20)
    n_star = float(answers["n_star"].iloc[0])
    assert ns.min() < n_star < ns.max()
    (ax,) = curves_figure(points, fits, KEYS, "test_error", answers).axes
    (line,) = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 100]
    x, y = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
    assert abs(np.interp(np.log(n_star), np.log(x), y) - 0.3) < 2e-3  # the marker is on the line
    pow3 = fits.iloc[0]
    pow3_at_star = pow3["a"] + pow3["b"] * n_star ** -pow3["c"]
    assert abs(pow3_at_star - 0.3) > 5e-3  # the pow3 line would have missed it
    slope = -np.diff(np.log(y[-2:])) / np.diff(np.log(x[-2:]))  # the line's own slope at n_max
    assert fits["rate"].iloc[0] == pytest.approx(float(slope[0]), abs=1e-3)
    assert abs(fits["rate"].iloc[0] - pow3["c"]) > 0.05  # pow3's c is another number
    short = "+".join(sorted(weights, key=lambda f: -float(weights[f])))
    texts = [t for t, _ in _legend_entries(ax.figure)]
    assert texts == [f"vit_pico · rate {fits['rate'].iloc[0]:.2f} · {short}"]  # constant keys out


def test_the_legend_lies_outside_the_axes():
    points = _points()
    fig = curves_figure(points, _fits(points), KEYS, "test_error")
    fig.canvas.draw()
    (ax,) = fig.axes
    legend = fig.legends[0].get_window_extent()
    axes = ax.get_window_extent()
    assert legend.x0 >= axes.x1 or legend.y1 <= axes.y0 or legend.x1 <= axes.x0
    assert not legend.overlaps(axes)


@pytest.mark.parametrize(("lo", "hi"), [(20, 80), (100, 130), (8, 20_000)])
def test_tick_labels_are_present_at_any_range_and_name_their_positions(lo, hi):
    points = _points(ns=np.geomspace(lo, hi, 5).round().astype(int), seeds=2)
    fig = curves_figure(points, _fits(points), KEYS, "test_error")
    fig.canvas.draw()
    (ax,) = fig.axes
    for axis, (vmin, vmax) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        labelled = [
            (loc, t.get_text())
            for loc, t in zip(axis.get_majorticklocs(), axis.get_ticklabels(), strict=True)
            if t.get_text() and vmin <= loc <= vmax
        ]
        assert len(labelled) >= 3, (axis.axis_name, labelled)
        for loc, text in labelled:
            value = float(text.replace("K", "e3").replace("M", "e6"))
            assert value == pytest.approx(loc, rel=1e-6)


def test_targets_are_drawn_with_each_n_star_on_its_curve():
    points = _points()
    fits = _fits(points)
    answers = fits[KEYS].assign(target=0.3, n_star=50.0, n_star_lo=40.0, n_star_hi=65.0)
    answers["extrapolated"] = False
    answers.loc[0, ["n_star", "n_star_lo", "n_star_hi", "extrapolated"]] = [
        150.0,
        120.0,
        190.0,
        True,
    ]
    fig = curves_figure(points, fits, KEYS, "test_error", answers)
    (ax,) = fig.axes
    horizontal = [
        line for line in ax.lines
        if np.allclose(line.get_ydata(), 0.3) and tuple(line.get_xdata()) == (0, 1)
    ]  # fmt: skip
    assert len(horizontal) == 1  # one line per target, across the axes
    marks = [  # one-point lines, less the caps of the n* intervals
        line for line in ax.lines if len(line.get_xdata()) == 1 and line.get_marker() != "|"
    ]  # fmt: skip
    assert sorted(float(m.get_xdata()[0]) for m in marks) == [50.0] * (len(fits) - 1) + [150.0]
    hollow = [m for m in marks if m.get_markerfacecolor() in ("white", (1, 1, 1, 1))]
    assert [float(m.get_xdata()[0]) for m in hollow] == [150.0]  # the extrapolated n*


def test_exponents_join_only_points_of_the_same_peft_and_m():
    """c vs N per (peft, m): a line through the models of one series, never across series."""
    points = _points()
    fits = _fits(points)
    series = {  # (peft, m) -> the c values of that series (hand-made, all distinct)
        key: set(rows["rate"].round(6)) for key, rows in fits.groupby(["peft", "source_m"])
    }
    fig = exponents_figure(fits, KEYS)
    (ax,) = fig.axes
    joined = [
        line for line in ax.lines
        if len(line.get_xdata()) > 1 and line.get_linestyle() not in ("None", "", " ")
    ]  # fmt: skip
    multi = {k for k, cs in series.items() if len(cs) > 1}
    assert len(joined) == len(multi) == 2  # linear and lora at m=4000 (four models each)
    for line in joined:
        cs = set(np.round(np.asarray(line.get_ydata(), float), 6))
        assert any(cs <= s for s in series.values()), "a line joins different (peft, m)"
        assert np.all(np.diff(np.asarray(line.get_xdata(), float)) > 0)  # in size order
    labels = [t.get_text() for t in ax.texts]
    assert sorted(labels) == sorted(fits["model"])  # every point names its model
    assert {t.get_text() for t in fig.legends[0].get_texts()} == {f"{p} · m={m}" for p, m in series}


def _sweep(root):
    for model, size in (("vit_pico", 200_000), ("vit_nano", 1_200_000)):
        for n, seed in itertools.product((16, 32, 64, 128), range(2)):
            write_json_atomic(
                root / f"{model}_{n}_{seed}" / "record.json",
                dict(status="ok", model=model, peft="linear", data="digits", weights="zoo",
                     n=n, seed=seed, backbone_params=size, test_error=0.1 + n**-0.5 + seed / 1e3),
            )  # fmt: skip


def test_format_writes_png_pdf_and_svg_beside_each_other(tmp_path):
    _sweep(tmp_path / "sweep")
    out = tmp_path / "out"
    assert (
        main(
            [
                str(tmp_path / "sweep"),
                "--out",
                str(out),
                "--bootstrap",
                "0",
                "--format",
                "png,pdf,svg",
            ]
        )
        == 0
    )
    for name in ("error_vs_n", "exponents"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
        assert b"<svg" in (out / f"{name}.svg").read_bytes()[:2000]
        dpi = Image.open(out / f"{name}.png").info["dpi"]
        assert min(dpi) >= 149.5


def test_a_bad_format_fails_in_one_line_before_any_work(tmp_path, capsys):
    _sweep(tmp_path / "sweep")
    out = tmp_path / "out"
    assert main([str(tmp_path / "sweep"), "--out", str(out), "--format", "png,jpg"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'jpg'" in err and "png, pdf, svg" in err
    assert not out.exists()


def test_answers_and_ratios_read_as_plain_sentences():
    answers = pd.DataFrame(
        [
            dict(model="vit_pico", peft="linear", source_m=4000, target=0.2, n_star=312.4,
                 n_star_lo=241.0, n_star_hi=418.0, extrapolated=True, extrapolation=2.1,
                 family="avg(pow3 0.70, mmf4 0.30)",
                 note="extrapolated: n* is 2.1x the largest n measured"),
            dict(model="vit_nano", peft="linear", source_m=4000, target=0.2, n_star=np.nan,
                 n_star_lo=np.nan, n_star_hi=np.nan, extrapolated=False, extrapolation=np.nan,
                 note="the fitted asymptote a=0.25 is above the target"),
        ]
    )  # fmt: skip
    shown = ["model", "peft", "source_m"]
    sentences = answer_sentences(answers, shown)
    assert sentences[0].count("extrapolated") == 1  # said once, with its model
    assert sentences == [
        "vit_pico · linear · m=4000 needs 312 [241, 418] examples for error 0.2 "
        "(avg(pow3 0.70, mmf4 0.30); extrapolated: n* is 2.1x the largest n measured)",
        "vit_nano · linear · m=4000: no n* for error 0.2 "
        "(the fitted asymptote a=0.25 is above the target)",
    ]
    ratios = pd.DataFrame(
        [
            dict(model="vit_pico", peft="lora", source_m=4000, baseline="vit_pico · linear",
                 target=0.2, ratio=2.3, ratio_lo=1.8, ratio_hi=2.9),
            dict(model="vit_pico", peft="full", source_m=4000, baseline="vit_pico · linear",
                 target=0.2, ratio=0.5, ratio_lo=0.4, ratio_hi=0.8),
        ]
    )  # fmt: skip
    assert ratio_sentences(ratios, shown) == [
        "vit_pico · lora · m=4000 needs 2.3× [1.8, 2.9] fewer examples than vit_pico · linear "
        "for error 0.2",
        "vit_pico · full · m=4000 needs 2× [1.2, 2.5] more examples than vit_pico · linear "
        "for error 0.2",
    ]


def test_comparison_tables_hold_the_seed_mean_and_interval_of_each_curve_per_n():
    points = _points()
    found = {c.title: c for c in comparisons(points, KEYS, "test_error")}
    # linear vs lora for each of the 7 (model, m) pairs, and the m sweep of pico per peft
    assert len(found) == 7 + 2
    sweep = found["m=0 vs m=250 vs m=1000 vs m=4000 · vit_pico · lora"]
    assert list(sweep.means.columns) == ["m=0", "m=250", "m=1000", "m=4000"]
    pico = points[(points["model"] == "vit_pico") & (points["peft"] == "lora")]
    g = pico.groupby(["source_m", "n"])["test_error"]
    for m in (0, 250, 1000, 4000):
        assert np.allclose(sweep.means[f"m={m}"], g.mean().loc[m])
        sem = g.std(ddof=1).loc[m] / np.sqrt(g.count().loc[m])
        t = stats.t.ppf(0.975, g.count().loc[m] - 1)  # a 95% Student-t interval over seeds
        assert np.allclose(sweep.half_widths[f"m={m}"], t * sem)
    assert "linear vs lora · vit_femto · m=4000" in found


_PROBE = """
const w = window.innerWidth;
const table = [...document.querySelectorAll('table')].find(t => t.rows[0].textContent.includes('message'));
const col = [...table.rows[0].cells].findIndex(c => c.textContent === 'message');
const cells = [...table.rows].slice(1).map(r => r.cells[col]);
return {
  width: w,
  pageWidth: document.documentElement.scrollWidth,
  tableRight: table.getBoundingClientRect().right,
  h2: [...document.querySelectorAll('h2')].map(h => h.textContent),
  answers: [...document.querySelectorAll('h2 ~ * li, section li')].map(l => l.textContent),
  messages: cells.map(c => {
    const r = c.getBoundingClientRect();
    return {left: r.left, right: r.right, width: r.width, text: c.textContent,
            clipped: c.scrollWidth > c.clientWidth,
            visible: getComputedStyle(c).visibility === 'visible' && getComputedStyle(c).display !== 'none'};
  }),
};
"""


def _wide_fits(points: pd.DataFrame) -> pd.DataFrame:
    """The fits table as issue #17 grows it: ~30 columns and a long message."""
    fits = _fits(points)
    for col in ("a_lo", "a_hi", "b_lo", "b_hi", "rmse", "pure_b", "pure_c", "pure_rmse",
                "n_points", "n_seeds", "n_min", "n_max", "backtest_offset", "backtest_pure",
                "backtest_broken", "at_bound", "family", "peft_knob_value"):  # fmt: skip
        fits[col] = 0.0123456
    fits.loc[2, "message"] = "; ".join(["bootstrap: 12 of 200 replicates did not converge"] * 4)
    return fits[[c for c in fits.columns if c != "message"] + ["message"]]


@needs_browser
@pytest.mark.parametrize("width", [1280, 900])
def test_report_opens_with_the_answers_and_its_fits_table_never_overflows(tmp_path, width):
    points = _points()
    fits = _wide_fits(points)
    answers = fits[KEYS].assign(target=0.3, n_star=50.0, n_star_lo=40.0, n_star_hi=65.0,
                                extrapolated=False, note="")  # fmt: skip
    summary = dict(records=len(points), ok=len(points), failed=0, unreadable=0, missing=0,
                   sweep_dirs=["sweep"], metric="test_error", group_by=KEYS)  # fmt: skip
    page = write_report(tmp_path, summary, fits, [], None, [], [], answers=answers, points=points)
    seen = measure_page(page, _PROBE, width=width)
    assert seen["h2"][0] == "Answers"
    assert "vit_femto · linear · m=4000 needs 50 [40, 65] examples for error 0.3" in seen["answers"]
    assert seen["pageWidth"] <= seen["width"] and seen["tableRight"] <= seen["width"]
    assert len(seen["messages"]) == len(fits)
    assert [m["text"] for m in seen["messages"] if m["text"]] == [fits.loc[2, "message"]]
    for m in seen["messages"]:
        assert m["visible"] and not m["clipped"]
        assert m["left"] >= 0 and m["right"] <= seen["width"] and m["width"] >= 100
    assert any(h.startswith("Comparisons") for h in seen["h2"])
    assert seen["h2"].index("Figures") < seen["h2"].index(
        next(h for h in seen["h2"] if h.startswith("Fits"))
    )
