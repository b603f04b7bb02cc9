"""``python -m caulk.analyze`` on broken sweeps, run as a user runs it: unreadable and badly shaped
records are reported per file (console, report, summary.json) and skipped, never a traceback; ok
records without a metric value are no points; an unwritable --out fails in one line, before any
work; a failed analysis leaves no half-written dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from caulk.analysis.output import MARKER
from caulk.analyze import analyze
from caulk.errors import CaulkConfigError
from caulk.run.record import write_json_atomic
from tests.conftest import REPO, cli_env

NS = (10, 20, 40, 80)


def _point(n: int, seed: int, **fields) -> dict:
    record = {
        "model": "vit_pico",
        "peft": "linear",
        "data": "digits",
        "weights": "zoo",
        "source_m": 0,
        "n": n,
        "seed": seed,
        "status": "ok",
        "test_error": 0.1 + n**-0.5 + 0.001 * seed,
    }
    return {**record, **fields}


def _good_sweep(root: Path, seeds: int = 2) -> Path:
    """A small sweep of ok records (len(NS) n x ``seeds`` seeds), one job dir each."""
    for n in NS:
        for seed in range(seeds):
            write_json_atomic(root / f"n{n}_s{seed}" / "record.json", _point(n, seed))
    return root


def _analyze(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "caulk.analyze", *args, "--bootstrap", "0"],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc


def _leftovers(parent: Path) -> list[str]:
    """Hidden staging dirs an analysis left behind."""
    return [p.name for p in parent.iterdir() if p.name.startswith(".") and ".tmp" in p.name]


def test_an_unreadable_record_is_reported_in_the_console_and_the_report(tmp_path):
    sweep = _good_sweep(tmp_path / "sweep")
    broken = sweep / "broken" / "record.json"
    broken.parent.mkdir()
    broken.write_text("{\n")
    proc = _analyze(str(sweep))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "caulk analyze: 8 records (8 ok, 0 failed), 1 unreadable, 0 missing jobs"
    assert f"  unreadable: {broken}: JSONDecodeError: Expecting property name" in proc.stdout
    out = sweep / "analysis"
    html = (out / "report.html").read_text()
    assert "1 unreadable" in html and f"unreadable: {broken}" in html
    summary = json.loads((out / "summary.json").read_text())
    assert summary["unreadable"] == 1 and summary["unreadable_records"][0]["path"] == str(broken)


def test_a_sweep_of_only_unreadable_records_says_so(tmp_path):
    sweep = tmp_path / "sweep"
    for job, text in (("0", "{"), ("1", "[1, 2]")):
        (sweep / job).mkdir(parents=True)
        (sweep / job / "record.json").write_text(text)
    proc = _analyze(str(sweep))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"caulk: error: no readable record.json under {sweep}: 2 unreadable, first "
        f"{sweep / '0' / 'record.json'} (JSONDecodeError: Expecting property name enclosed in "
        "double quotes: line 1 column 2 (char 1))"
    ]
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "1"]  # no analysis dir, no staging


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"status": "ok"}, "bad record: an ok record needs n"),
        (_point(10, 5, test_error="0.5"), "bad record: field 'test_error' has the wrong type"),
        ({**_point(10, 5), "n": "10"}, "bad record: field 'n' has the wrong type: '10'"),
        ([_point(10, 5)], "bad record: a record is a JSON object, not list"),
        ({"n": 10, "seed": 5, "test_error": 0.5}, "bad record: no 'status' field"),
    ],
)
def test_a_badly_shaped_record_is_reported_by_file_and_skipped(tmp_path, record, reason):
    sweep = _good_sweep(tmp_path / "sweep")
    bad = sweep / "bad" / "record.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps(record))
    proc = _analyze(str(sweep))
    assert proc.returncode == 0, proc.stderr
    assert ", 1 unreadable," in proc.stdout.splitlines()[0]
    assert f"  unreadable: {bad}: {reason}" in proc.stdout
    table = pd.read_csv(sweep / "analysis" / "table.csv")
    assert len(table) == 8 and str(bad) not in set(table["record_path"])


def test_an_ok_record_with_a_nan_or_null_metric_is_no_point(tmp_path):
    sweep = _good_sweep(tmp_path / "sweep", seeds=2)
    nan, null = sweep / "nan" / "record.json", sweep / "null" / "record.json"
    write_json_atomic(nan, _point(10, 2, test_error=float("nan")))  # written as NaN
    write_json_atomic(null, _point(20, 3, test_error=None))
    proc = _analyze(str(sweep))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == (
        "caulk analyze: 10 records (8 ok, 0 failed, 2 skipped), 0 unreadable, 0 missing jobs"
    )
    why = "ok record without a test_error value (missing, null or NaN)"
    assert f"  skipped: {nan}: {why}" in lines and f"  skipped: {null}: {why}" in lines
    assert "(4 n, 2 seeds)" in proc.stdout
    fits = pd.read_csv(sweep / "analysis" / "fits.csv")
    assert fits["n_seeds"].tolist() == [2] and fits["n_points"].tolist() == [4]
    summary = json.loads((sweep / "analysis" / "summary.json").read_text())
    assert summary["ok"] == 8 and summary["skipped"] == 2
    assert "skipped: " in (sweep / "analysis" / "report.html").read_text()


def test_an_unwritable_out_fails_in_one_line_before_any_work(tmp_path):
    sweep = _good_sweep(tmp_path / "sweep")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    for out in (blocker / "analysis", blocker):
        proc = _analyze(str(sweep), "--out", str(out))
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.strip().splitlines() == [
            f"caulk: error: cannot write the analysis into {out}: {blocker} is a file, not a "
            "directory (choose another with --out)"
        ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "sweep"]
    assert not (sweep / "analysis").exists() and not _leftovers(sweep)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only dirs")
def test_an_out_in_a_read_only_dir_fails_in_one_line(tmp_path):
    sweep = _good_sweep(tmp_path / "sweep")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    proc = _analyze(str(sweep), "--out", str(locked / "analysis"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"caulk: error: cannot write the analysis into {locked / 'analysis'}: Permission denied "
        "(choose another with --out)"
    ]
    assert not list(locked.iterdir())


def test_a_failed_analysis_leaves_the_previous_one_whole_and_nothing_half_written(
    tmp_path, monkeypatch
):
    """The outputs go to a staging dir that replaces ``out`` only when the analysis is done."""
    import caulk.analysis.plots
    import caulk.analyze

    sweep = _good_sweep(tmp_path / "sweep")
    out = sweep / "analysis"
    analyze([sweep], replicates=0)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def boom(*args, **kwargs):
        raise RuntimeError("plotting failed")

    for module in (caulk.analysis.plots, caulk.analyze):  # wherever plot_curves is looked up
        monkeypatch.setattr(module, "plot_curves", boom, raising=False)
    write_json_atomic(sweep / "extra" / "record.json", _point(160, 0))
    with pytest.raises(RuntimeError, match="plotting failed"):
        analyze([sweep], replicates=0)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not _leftovers(sweep)

    monkeypatch.undo()
    (out / "stale.txt").write_text("a user's file in the previous analysis")
    with pytest.raises(CaulkConfigError, match="holds more than a previous caulk analysis"):
        analyze([sweep], replicates=0)  # stale.txt is not caulk's: the dir is not replaced
    (out / "stale.txt").unlink()
    analyze([sweep], replicates=0)  # a good analysis replaces the previous one whole
    assert not _leftovers(sweep)
    assert len(pd.read_csv(out / "table.csv")) == 9


def _theory_point(n: int, **fields) -> dict:
    record = {
        "kind": "linear_teacher",
        "d": 50,
        "covariance": "isotropic",
        "curve": "d=50,covariance=isotropic",  # a theory curve's label (a training record's flag)
        "curve_keys": ["d", "covariance"],
        "n": n,
        "seed": 0,
        "status": "ok",
        "message": "",
        "excess_risk": 1 - n / 50,
        "config": {"n": [10, 20, 30]},
    }
    return {**record, **fields}


def test_theory_records_pass_the_same_schema_check(tmp_path):
    sweep = tmp_path / "theory"
    for n in (10, 20, 30):
        write_json_atomic(sweep / f"n{n}" / "record.json", _theory_point(n))
    write_json_atomic(sweep / "keys" / "record.json", _theory_point(40, curve_keys="d"))
    write_json_atomic(sweep / "seed" / "record.json", _theory_point(40, seed="0"))
    proc = _analyze(str(sweep))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == (
        "caulk analyze: 3 records (3 ok, 0 failed), 2 unreadable, 0 missing jobs"
    )
    keys, seed = sweep / "keys" / "record.json", sweep / "seed" / "record.json"
    assert f"  unreadable: {keys}: bad record: field 'curve_keys' must be a list of names" in (
        proc.stdout
    )
    assert f"  unreadable: {seed}: bad record: field 'seed' has the wrong type: '0'" in proc.stdout
    summary = json.loads((sweep / "analysis" / "summary.json").read_text())
    assert summary["metric"] == "excess_risk" and summary["group_by"] == ["d", "covariance"]
    table = pd.read_csv(sweep / "analysis" / "table.csv")
    assert table["curve"].tolist() == ["d=50,covariance=isotropic"] * 3


def _files(root: Path) -> dict[str, bytes]:
    """Every file below ``root``, by relative path, with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _one_line_refusal(proc: subprocess.CompletedProcess, out: Path, why: str) -> None:
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"caulk: error: cannot write the analysis into {out}: {why} (choose another with --out)"
    ]


def test_an_out_holding_a_users_files_is_refused_and_left_byte_for_byte(tmp_path):
    sweep = _good_sweep(tmp_path / "sweep")
    mydir = tmp_path / "mydir"
    mydir.mkdir()
    (mydir / "notes.txt").write_text("my notes\n")
    before = _files(tmp_path)
    proc = _analyze(str(sweep), "--out", str(mydir))
    why = "it is a non-empty dir that holds more than a previous caulk analysis"
    _one_line_refusal(proc, mydir, why)
    assert _files(tmp_path) == before and not _leftovers(tmp_path)


@pytest.mark.parametrize("levels_up", [0, 1, 2], ids=["the-sweep", "its-parent", "two-up"])
def test_an_out_that_holds_the_sweep_is_refused_and_nothing_is_touched(tmp_path, levels_up):
    top = tmp_path / "top"
    sweep = _good_sweep(top / "parent" / "sweep")
    (sweep / "n10_s0" / "adapter.safetensors").write_bytes(b"\x00weights")
    (top / "parent" / "user_notes.txt").write_text("keep me")
    (top / "README").write_text("mine too")
    out = [sweep, *sweep.parents][levels_up]
    before = _files(tmp_path)
    proc = _analyze(str(sweep), "--out", str(out))
    _one_line_refusal(proc, out, f"it holds the records of sweep {sweep.resolve()}")
    assert _files(tmp_path) == before
    assert not any(_leftovers(d) for d in [sweep, *sweep.parents][:4])


def test_an_empty_out_a_previous_analysis_and_a_pre_marker_one_are_replaced(tmp_path):
    sweep = _good_sweep(tmp_path / "sweep")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _analyze(str(sweep), "--out", str(empty)).returncode == 0
    marker = json.loads((empty / MARKER).read_text())
    assert set(marker["entries"]) == {p.name for p in empty.iterdir()} - {MARKER}
    assert {"report.html", "summary.json", "fits.csv"} <= set(marker["entries"])

    write_json_atomic(sweep / "n160_s0" / "record.json", _point(160, 0))
    assert _analyze(str(sweep), "--out", str(empty)).returncode == 0  # its own previous analysis
    assert len(pd.read_csv(empty / "table.csv")) == 9

    (empty / MARKER).unlink()  # an analysis written before the marker: only analysis files
    assert _analyze(str(sweep), "--out", str(empty)).returncode == 0
    assert (empty / MARKER).exists() and not _leftovers(tmp_path)


def test_a_lambda_at_the_edge_of_its_grid_is_flagged_in_the_console_report_and_summary(tmp_path):
    sweep = _good_sweep(tmp_path / "sweep")
    edge = sweep / "edge" / "record.json"
    selected = {"lambda": 1e-6, "selection": "holdout", "lambda_at_edge": "low"}
    write_json_atomic(edge, _point(160, 0, selected=selected))
    write_json_atomic(sweep / "inner" / "record.json", _point(160, 1, selected={"lambda": 0.01}))
    proc = _analyze(str(sweep))
    assert proc.returncode == 0, proc.stderr
    flagged = [line for line in proc.stdout.splitlines() if "λ at a grid edge" in line]
    assert flagged == [f"  λ at a grid edge: {edge}: λ at the low end of peft.lambdas"]
    summary = json.loads((sweep / "analysis" / "summary.json").read_text())
    assert [r["path"] for r in summary["lambda_at_edge_records"]] == [str(edge)]
    assert (
        f"{edge}: λ at the low end of peft.lambdas"
        in (sweep / "analysis" / "report.html").read_text()
    )


@pytest.mark.parametrize("value", ["0.5", "nan", "-1"])
def test_a_max_extrapolation_below_1_is_one_line_before_any_work(tmp_path, value):
    sweep = _good_sweep(tmp_path / "sweep")
    proc = _analyze(str(sweep), "--target-error", "0.2", f"--max-extrapolation={value}")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"caulk: error: --max-extrapolation must be a factor >= 1, got {float(value)}"
    ]
    assert not (sweep / "analysis").exists() and not _leftovers(sweep)
