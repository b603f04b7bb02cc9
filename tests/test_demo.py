"""The demo behind `make demo`: its sweeps, bad input, and (slow) a reduced demo end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from caulk.demo import demo_sweeps, format_findings, main, small_n_comparison
from tests.conftest import REPO, cli_env
from tests.wandb_files import of_type, wandb_records


def test_demo_sweeps_cover_sizes_pefts_and_the_m_sweep():
    sweeps = demo_sweeps(["vit_femto", "vit_pico"], [0, 1000, 32000], "vit_pico", lora=True)
    assert sweeps["linear"] == [
        "model=vit_femto,vit_pico",
        "peft=linear",
        "model.source_m=0,32000",
    ]
    assert "model.source_m=32000" in sweeps["lora"] and "peft=lora" in sweeps["lora"]
    assert "trainer.max_steps=150" in sweeps["lora"]
    assert sweeps["source_m"] == ["model=vit_pico", "peft=linear", "model.source_m=1000"]
    assert set(demo_sweeps(["vit_femto"], [0, 500], "vit_femto", lora=False)) == {"linear"}
    assert "tune.grid={peft.lr:[0.003,0.01]}" in sweeps["lora"]  # lr chosen per point


def test_transfer_adds_from_scratch_curves(tmp_path):
    from caulk.demo import check_demo_overrides

    sweeps = demo_sweeps(
        ["vit_femto", "vit_pico"], [0, 4000], "vit_pico", lora=False, transfer=True
    )
    scratch = sweeps["scratch"]
    assert scratch[:3] == ["model=vit_femto,vit_pico", "peft=full", "model.weights=none"]
    check_demo_overrides(sweeps, [])  # every job composes and validates
    assert "scratch" not in demo_sweeps(["vit_femto"], [0, 4000], "vit_femto", lora=False)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--source-m", "500"], "two source sizes"),
        (["--source-m=-1,5"], "two source sizes"),
        (["--models", "vit_zeta"], "unknown model 'vit_zeta'"),
        (["--lora-steps", "0"], "--lora-steps must be >= 1"),
    ],
)
def test_demo_bad_input_is_one_line_before_any_work(tmp_path, capsys, argv, message):
    assert main([*argv, "--out", str(tmp_path / "demo")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "demo").exists()


def test_a_demo_out_that_cannot_be_a_dir_is_one_line_before_any_work(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    for out in ("/proc/caulk_demo", str(a_file), str(a_file / "demo")):
        assert main(["--out", out]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"caulk: error: --out is not writable: {out} ")
    assert a_file.read_text() == "mine" and sorted(tmp_path.iterdir()) == [a_file]
    assert not Path("/proc/caulk_demo").exists()


def test_small_n_comparison_averages_over_seeds_and_small_n():
    table = pd.DataFrame(
        {
            "status": ["ok"] * 5 + ["failed"],
            "model": ["m"] * 6,
            "peft": ["linear"] * 6,
            "source_m": [0, 0, 10, 10, 10, 10],
            "n": [20, 50, 20, 50, 500, 20],
            "test_error": [0.8, 0.6, 0.5, 0.3, 0.0, 0.0],
        }
    )
    cmp = small_n_comparison(table, small_n=100).set_index("source_m")
    assert cmp.loc[0, "mean"] == pytest.approx(0.7) and cmp.loc[10, "mean"] == pytest.approx(0.4)
    assert cmp.loc[10, "count"] == 2


@pytest.mark.slow
def test_reduced_demo_end_to_end(tmp_path):
    """A small demo through the real CLI: zoo built on the spot, report written, and the
    pre-trained backbone beats its random initialisation at small n."""
    out = tmp_path / "demo"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "caulk.demo",
            "--models",
            "vit_femto",
            "--source-m",
            "0,4000",
            "--m-sweep-model",
            "vit_femto",
            "--out",
            str(out),
            "curve.n=[20,40,80]",
            "curve.seeds=[0,1]",
            "source_task.steps=200",
        ],
        cwd=REPO,
        env=cli_env(CAULK_CACHE=str(tmp_path / "cache"), CAULK_ROOT=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = out / "analysis" / "report.html"
    assert report.is_file() and "by source size m" in report.read_text()
    assert (out / "analysis" / "error_vs_n.png").is_file()
    assert (out / "analysis" / "error_vs_source_m.png").is_file()
    every = [json.loads(p.read_text()) for p in out.rglob("record.json")]
    records = [r for r in every if "tune_candidate" not in r]  # the points, not LoRA's candidates
    # linear x {m=0, m=4000} + lora at m=4000, 3 n x 2 seeds each; LoRA's 2 lr candidates each
    assert len(records) == 18 and all(r["status"] == "ok" for r in records)
    assert len(every) == 18 + 6 * 2
    lora = [r for r in records if r["peft"] == "lora"]
    assert all(r["selected"]["peft.lr"] in (0.003, 0.01) for r in lora)
    assert {r["solver"] for r in records if r["peft"] == "linear"} == {"ridge"}
    answers = pd.read_csv(out / "analysis" / "sample_complexity.csv")
    assert set(answers["target"]) == {0.3, 0.15} and "Answers" in report.read_text()
    assert {r["zoo_entry"] is not None for r in records} == {True}
    assert len(list((tmp_path / "cache" / "zoo").glob("*.json"))) == 2
    table = pd.DataFrame(records)
    cmp = small_n_comparison(table).query("peft == 'linear'").set_index("source_m")["mean"]
    assert cmp.loc[4000] < cmp.loc[0]
    assert "pre-trained beats random init" in proc.stdout
    runs = sorted(out.rglob("wandb/offline-run-*"))
    assert len(runs) == 4, runs  # linear m=0, m=4000, lora m=4000, and the aggregate
    infos = [of_type(wandb_records(r), "run")[0] for r in runs]
    assert {i["run_group"] for i in infos} == {out.name}  # one group, the demo dir's name
    assert len({i["display_name"] for i in infos}) == 4
    (hint,) = [line for line in proc.stdout.splitlines() if "wandb sync " in line]
    globs = hint.split("wandb sync ", 1)[1]
    shell = subprocess.run(
        ["bash", "-c", f"printf '%s\\n' {globs}"], cwd="/", capture_output=True, text=True
    )
    assert sorted(shell.stdout.split()) == [str(r.resolve()) for r in runs]
    # progress reaches the console, one line per step (not a terminal); no bar in the logs
    assert "[caulk] job 2/2  experiment=demo" in proc.stderr
    # the zoo is pre-trained first, in worker processes: a line per entry, their steps in zoo.log
    assert "[demo] zoo: pre-training 2 missing entries" in proc.stdout
    assert "[demo]   caulk_vit_femto m=4000: " in proc.stdout
    assert "[caulk] pre-training step 1/200  caulk_" in (out / "zoo.log").read_text()
    # the LoRA curve's 12 trainings (6 points x 2 lr candidates) run as one batched computation
    assert "[caulk] 12 points in 1 batched_suffix fit(s)  vit_femto lora" in proc.stderr
    assert "[caulk] batched step 1/" in proc.stderr
    for log in out.glob("*.log"):
        assert b"\r" not in log.read_bytes() and b"it/s" not in log.read_bytes(), log
    # the run's timing and provenance, the source the docs quote the demo's figures from
    timing = json.loads((out / "demo.json").read_text())
    assert set(timing["sweeps_s"]) == {"linear", "lora"}  # m = 0, 4000 only: no m sweep
    assert timing["total_s"] >= sum(timing["sweeps_s"].values()) + timing["analysis_s"] > 0
    assert (timing["zoo_entries_before"], timing["zoo_entries_after"]) == (0, 2)
    assert timing["total_s"] >= timing["zoo_build_s"] > 0
    zoo = {e["source_m"]: e for e in timing["zoo"]}  # the entries it pre-trained, as built
    assert set(zoo) == {0, 4000} and {e["arch"] for e in zoo.values()} == {"caulk_vit_femto"}
    assert zoo[4000]["wall_time_s"] > 0 and 0 <= zoo[4000]["source_accuracy"] <= 1
    assert timing["command"].startswith("python -m caulk.demo --models vit_femto")
    assert timing["machine"]["cores"] >= 1 and timing["machine"]["torch_threads"] >= 1
    assert timing["commit"] and timing["date"].endswith("Z")


def test_findings_say_whether_pretraining_helps_and_error_falls_with_m():
    def table(errors_by_m):
        rows = [
            {
                "status": "ok",
                "model": "m",
                "peft": "linear",
                "source_m": m,
                "n": 20,
                "test_error": e,
            }
            for m, e in errors_by_m.items()
        ]
        return pd.DataFrame(rows)

    good = format_findings(table({0: 0.7, 1000: 0.5, 32000: 0.4}))[1]
    assert "pre-trained beats random init" in good and "error falls as m grows" in good
    bad = format_findings(table({0: 0.4, 1000: 0.5, 32000: 0.45}))[1]
    assert "does NOT beat random init" in bad and "does NOT fall monotonically" in bad


def test_a_failing_sweep_raises_with_its_log_and_keeps_the_console_clean(tmp_path, capsys):
    import logging

    from caulk.demo import run_sweep

    with pytest.raises(RuntimeError, match="demo sweep 'bad' failed") as err:
        run_sweep("bad", ["model=vit_femto", "peft=linear"], tmp_path, ["curve.n=[]"])
    log = (tmp_path / "bad.log").read_text()
    assert "curve.n must be a non-empty list" in log and "bad.log" in str(err.value)
    out = capsys.readouterr()
    assert "non-empty" not in out.out + out.err  # the job's output went to its log only
    assert out.err.splitlines()[0].startswith(
        "[caulk] job 1/1  experiment=demo"
    )  # its progress did not
    for logger in [logging.getLogger(), *logging.root.manager.loggerDict.values()]:
        for h in getattr(logger, "handlers", []):  # none left writing to the closed log
            assert not getattr(getattr(h, "stream", None), "closed", False), (logger, h)


@pytest.mark.parametrize(
    "argv, line",
    [
        (["--source-m", "abc"], "--source-m must be comma-separated integers m >= 0, got 'abc'"),
        (["--source-m", "-1,0"], "--source-m needs two source sizes m >= 0"),
        (["--lora-steps", "x"], "argument --lora-steps: invalid int value: 'x'"),
        (["data.n=abc"], "data.n must be a positive integer or null, got 'abc'"),
        (["peft.rnak=3"], "bad override: Could not override 'peft.rnak'."),
        (["curve.seeds=[0"], "bad override: no viable alternative at input '[0'"),
        (["data=nope"], "unknown data 'nope'; available:"),
    ],
)
def test_bad_demo_flags_and_overrides_fail_in_one_line_before_any_sweep(
    tmp_path, capsys, monkeypatch, argv, line
):
    """Each demo job's config is composed and validated up front: no sweep runs."""

    def no_sweep(*args, **kwargs):
        raise AssertionError("a sweep ran")

    monkeypatch.setattr("caulk.demo.run_sweep", no_sweep)
    try:
        code = main([*argv, "--out", str(tmp_path / "demo")])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("caulk: error: "), err
    assert line in err[0]
    assert not (tmp_path / "demo").exists()


def test_demo_cli_names_the_bad_flag_in_one_line(tmp_path):
    """As a user runs it: a value starting with "-" is read as --source-m's, not as a flag."""
    proc = subprocess.run(
        [sys.executable, "-m", "caulk.demo", "--source-m", "-1,0", "--out", str(tmp_path / "d")],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "caulk: error: --source-m needs two source sizes m >= 0 (e.g. --source-m 0,32000), "
        "got '-1,0'"
    ]
    assert not (tmp_path / "d").exists()


def test_good_demo_overrides_pass_the_up_front_check():
    from caulk.demo import check_demo_overrides

    sweeps = demo_sweeps(["vit_femto", "vit_pico"], [0, 250, 4000], "vit_pico", lora=True)
    check_demo_overrides(sweeps, ["curve.seeds=[0]", "seed=0,1", "trainer.max_steps=10"])
