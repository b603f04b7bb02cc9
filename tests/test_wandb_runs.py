"""W&B runs read back from their offline files: a curve run's name, grid, rows, table and chart;
one group for a sweep's jobs and its aggregate; the printed ``wandb sync`` commands."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from caulk.demo import demo_group, group_override, sync_hint
from caulk.run.record import read_record
from caulk.run.wandb_curve import curve_run_name
from caulk.train import train_curve
from tests.conftest import compose_cfg, run_cli
from tests.wandb_files import history, of_type, wandb_records

SYNC = re.compile(r"upload with: wandb sync (\S+)")


def only_run_dir(out: Path) -> Path:
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    return run_dir


def synced_paths(err: str) -> list[Path]:
    """The run dirs named by the printed ``wandb sync`` commands."""
    return [Path(p) for p in SYNC.findall(err)]


def test_curve_run_name_has_model_source_peft_knob_and_job():
    lora = compose_cfg(["peft=lora", "model.weights=zoo", "model.source_m=4000"], Path("/s/3"))
    assert curve_run_name(lora) == f"vit_pico-m4000-lora-rank{lora.peft.rank}-curve-j3"
    linear = compose_cfg(["peft=linear"], Path("/runs/2026-12-01_10-00-00"))
    name = curve_run_name(linear)
    assert re.fullmatch(r"vit_pico-scratch-linear-curve-[0-9a-f]{6}", name)
    assert curve_run_name(compose_cfg(["model=vit_t"], Path("/s/0"))).startswith("vit_t-timm-")


def test_curve_run_offline_files_hold_grid_rows_table_chart_and_group(tmp_path, capfd):
    out = tmp_path / "curve"
    cfg = compose_cfg(
        [
            "trainer.max_steps=6",
            "trainer.val_check_interval=3",
            "trainer.enable_progress_bar=false",
            "logger=default",
            "logger.wandb.group=my-group",
            "curve.n=[20,40]",
            "curve.seeds=[0,1]",
        ],
        out,
    )
    train_curve(cfg)
    run_dir = only_run_dir(out)
    assert synced_paths(capfd.readouterr().err) == [run_dir.resolve()]
    records = wandb_records(run_dir)
    (run,) = of_type(records, "run")
    assert run["display_name"] == curve_run_name(cfg)
    assert run["display_name"].startswith("vit_pico-scratch-linear-curve-")
    assert run["run_group"] == "my-group"
    config = run["config"]["update"]
    assert (config["curve_n"], config["curve_seeds"]) == ([20, 40], [0, 1])
    assert "seed" not in config["config"] and "n" not in config["config"]["data"]
    later = [u for c in of_type(records, "config") for u in c["update"]]
    assert "n" not in later and "seed" not in later  # no point's n or seed overwrites the grid

    on_disk = {(r["n"], r["seed"]): r for r in map(read_record, out.glob("n*_s*/record.json"))}
    rows = history(records)
    points = [row for row in rows if "scaling/error" in row]
    assert {(row["n"], row["seed"]) for row in points} == set(on_disk) and len(points) == 4
    for row in points:
        assert row["scaling/error"] == pytest.approx(on_disk[row["n"], row["seed"]]["test_error"])
    others = [row for row in rows if "n" not in row or "seed" not in row]
    assert len(others) == 1 and "loglog_table.nrows" in others[0]  # the chart's own row

    summary = {k: v for s in of_type(records, "summary") for k, v in s["update"].items()}
    assert summary["points"]["nrows"] == 4
    assert "n" not in summary and "seed" not in summary  # no last point passed off as the run's
    assert (summary["points_ok"], summary["points_not_ok"], summary["n_max"]) == (4, 0, 40)
    at_40 = [on_disk[40, s]["test_error"] for s in (0, 1)]
    assert summary["test_error_at_n_max"] == pytest.approx(np.mean(at_40))
    table = json.loads((run_dir / "files" / summary["points"]["path"]).read_text())
    assert {(n, s) for n, s, *_ in table["data"]} == set(on_disk)
    assert {"status", "test_error", "val_error", "train_loop"} <= set(table["columns"])
    panels = json.dumps(of_type(records, "config"), separators=(",", ":"))
    assert '"panelDefId":"wandb/lineseries/v0"' in panels  # wandb.plot.line_series
    chart = json.loads((run_dir / "files" / summary["loglog_table.path"]).read_text())
    mean = {round(10**x): y for x, key, y in chart["data"] if key == "mean"}
    assert set(mean) == {20, 40}
    for n in (20, 40):
        expected = np.log10(np.mean([on_disk[n, s]["test_error"] for s in (0, 1)]))
        assert mean[n] == pytest.approx(expected)
    seed_1 = [v for x, key, y in chart["data"] if key == "seed 1" for v in (x, y)]
    errors = [on_disk[n, 1]["test_error"] for n in (20, 40)]
    assert seed_1 == pytest.approx(np.log10([20, errors[0], 40, errors[1]]))


@pytest.mark.slow
def test_multirun_jobs_and_aggregate_share_the_sweep_group_with_distinct_names(tmp_path):
    """Two jobs of one multirun that differ only in the learning rate: two names, one group (the
    sweep dir's), the aggregate of the on-end analysis in it too; each run prints its sync path."""
    sweep = tmp_path / "sweep-dir"
    res = run_cli(
        [
            "-m",
            "trainer.max_steps=6",
            "trainer.val_check_interval=3",
            "trainer.enable_progress_bar=false",
            "curve.n=[20,40]",
            "peft.lr=0.001,0.002",
            "hydra.callbacks.analyze.bootstrap=0",
            f"hydra.sweep.dir={sweep}",
        ],
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    job_runs = [only_run_dir(sweep / job) for job in ("0", "1")]
    aggregate = only_run_dir(sweep / "analysis")
    assert sorted(synced_paths(res.stderr)) == sorted(p.resolve() for p in [*job_runs, aggregate])
    runs = [of_type(wandb_records(d), "run")[0] for d in [*job_runs, aggregate]]
    names = [r["display_name"] for r in runs]
    assert names[0] != names[1] and all(n.startswith("vit_pico-scratch-linear") for n in names[:2])
    assert {r["run_group"] for r in runs} == {"sweep-dir"}
    assert runs[2]["job_type"] == "aggregate"


def test_multirun_end_puts_the_aggregate_in_the_configured_group(tmp_path):
    """logger.wandb.group, when set, is the aggregate's group too (as it is every job's)."""
    from caulk.callbacks.hydra_analyze import AnalyzeOnMultirunEnd

    sweep = tmp_path / "sweep"
    train_curve(
        compose_cfg(
            ["trainer.max_steps=6", "logger=csv", "curve.n=[20,40]", "curve.seeds=[0,1]"],
            sweep / "0",
        )
    )
    config = OmegaConf.create(
        {
            "hydra": {"sweep": {"dir": str(sweep)}},
            "logger": {"wandb": {"group": "shared", "project": "caulk"}},
        }
    )
    AnalyzeOnMultirunEnd(wandb=True, wandb_mode="offline", bootstrap=0).on_multirun_end(config)
    (run,) = of_type(wandb_records(only_run_dir(sweep / "analysis")), "run")
    assert (run["run_group"], run["job_type"]) == ("shared", "aggregate")


def test_demo_group_is_one_name_for_all_sweeps_and_its_override_composes(tmp_path):
    root = tmp_path / "2026-12-01_10-00-00"
    assert demo_group(root, ["curve.seeds=[0]"]) == root.name
    assert demo_group(root, ["logger.wandb.group=a", "++logger.wandb.group=b"]) == "b"
    odd = "it's, odd=1"
    cfg = compose_cfg([group_override(odd)])
    assert cfg.logger.wandb.group == odd
    assert compose_cfg(["logger=csv", group_override("g")]).logger.wandb.group == "g"


def test_demo_sync_hint_expands_to_every_offline_run_from_any_dir(tmp_path):
    root = tmp_path / "demo root"
    assert sync_hint(root) is None
    runs = [
        root / "linear" / "0" / "wandb" / "offline-run-1",
        root / "lora" / "3" / "wandb" / "offline-run-2",
        root / "analysis" / "wandb" / "offline-run-3",
    ]
    for run in runs:
        run.mkdir(parents=True)
    (root / "linear" / "0" / "wandb" / "debug.log").write_text("")
    hint = sync_hint(root)
    assert hint.startswith("wandb sync ")
    args = hint.removeprefix("wandb sync ")
    shell = subprocess.run(
        ["bash", "-c", f"printf '%s\\n' {args}"], cwd="/", capture_output=True, text=True
    )
    assert sorted(shell.stdout.split("\n")[:-1]) == sorted(str(r) for r in runs)
