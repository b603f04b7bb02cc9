"""Every benchmark in ``benchmarks/`` runs end to end at tiny sizes (``--smoke``), both arms of its
comparison, and ends with its JSON result line: no benchmark breaks unnoticed."""

from __future__ import annotations

import importlib.util
import json
import math
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from caulk.threads import usable_cpus
from tests.conftest import REPO, cli_env

TIMEOUT_S = 600  # a hung benchmark fails instead of stalling the suite


def run_smoke(name: str, tmp_path, *args: str) -> dict:
    """Run ``python benchmarks/<name>.py --smoke [args]`` from the repo root; its last line, parsed.

    Fails the test, with the output's tail, if it exits non-zero or does not end with a JSON
    object.
    """
    proc = subprocess.run(
        [sys.executable, f"benchmarks/{name}.py", "--smoke", *args],
        cwd=REPO,
        env=cli_env(PYTHONPATH=str(REPO), CAULK_CACHE=str(tmp_path / "cache")),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, (
        f"{name}.py --smoke exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, f"{name}.py --smoke printed nothing on stdout:\n{proc.stderr[-3000:]}"
    try:
        result = json.loads(lines[-1])
    except json.JSONDecodeError as e:
        pytest.fail(f"{name}.py --smoke: last line is not JSON ({e}): {lines[-1][:500]!r}")
    assert isinstance(result, dict), lines[-1]
    assert result.get("smoke") is True, result
    stamp = result["provenance"]  # every benchmark says where, when and how it was measured
    assert stamp["machine"]["cores"] >= 1 and stamp["commit"] and stamp["date"].endswith("Z")
    assert stamp["command"] == shlex.join(["python", f"benchmarks/{name}.py", "--smoke", *args])
    return result


def assert_positive(result: dict, *keys: str) -> None:
    """Each of ``keys`` is in ``result`` and a finite number > 0."""
    for key in keys:
        value = result.get(key)
        assert isinstance(value, int | float) and math.isfinite(value) and value > 0, (key, result)


def test_overhead_smoke(tmp_path):
    r = run_smoke("overhead", tmp_path)
    assert r["name"] == "overhead_lora_lightning_vs_bare"
    assert_positive(r, "ratio", "caulk_images_per_s", "bare_images_per_s", "timed_steps")
    assert len(r["caulk_steps_per_s_runs"]) == len(r["bare_steps_per_s_runs"]) == 2  # re-runs too
    assert all(s > 0 for s in r["caulk_steps_per_s_runs"] + r["bare_steps_per_s_runs"])
    assert r["model"] == "vit_femto" and r["device"] == "cpu" and r["compile"] is False


def test_curve_smoke(tmp_path):
    r = run_smoke("curve", tmp_path)
    assert r["name"] == "curve_linear_probe_cache"
    assert_positive(r, "ratio", "uncached_s", "cached_s", "extraction_pass_s")
    assert r["points"] == 2 and r["model"] == "vit_femto"
    assert r["max_test_error_diff"] <= 0.02  # the cached and uncached curves agree


@pytest.mark.slow
def test_curve_floor_smoke(tmp_path):
    r = run_smoke("curve_floor", tmp_path)
    assert r["name"] == "curve_cached_vs_extraction_pass"
    assert_positive(r, "ratio", "cached_s", "extraction_pass_s", "cached_over_extraction")
    assert r["points"] == 2 and r["overrides"] == []


@pytest.mark.slow
def test_partial_k_smoke(tmp_path):
    r = run_smoke("partial_k", tmp_path)
    assert r["name"] == "partial_k_prefix_cache"
    assert_positive(r, "ratio")
    assert r["ratio"] == r["partial"]["ratio"] and r["points"] == 1
    for method in ("partial", "lora_last_k"):
        assert_positive(r[method], "ratio", "cached_s", "uncached_s")
        assert r[method]["cache_prefix"] == "vit_blocks_2"  # ViT-Femto's 3 blocks, k=1
        assert r[method]["max_test_error_diff"] <= 0.02


@pytest.mark.slow
def test_sweep_smoke(tmp_path):
    r = run_smoke("sweep", tmp_path)
    assert r["name"] == "sweep_curve_process_vs_process_per_point"
    assert_positive(r, "ratio", "curve_process_s", "process_per_point_s")
    assert r["points"] == 1 and r["peft"] == "linear"


def test_tuned_curve_smoke(tmp_path):
    r = run_smoke("tuned_curve", tmp_path)
    assert r["name"] == "tuned_linear_probe_curve_vs_sklearn_grid"
    assert_positive(r, "ratio", "caulk_s", "sklearn_s", "torch_threads", "extraction_s")
    assert r["curve_over_extraction"] == pytest.approx(r["caulk_s"] / r["extraction_s"], rel=0.05)
    assert r["points"] == 2 and r["lambdas"] == 3 and r["model"] == "vit_pico"
    assert 0 <= r["max_abs_test_error_diff"] <= 0.05  # same grid, same selection


def test_tune_grid_smoke(tmp_path):
    r = run_smoke("tune_grid", tmp_path)
    assert r["name"] == "tune_grid_linear_probe"
    assert_positive(r, "grid_over_one_fit", "loop_over_grid", "one_fit_s", "grid_s", "loop_s")
    assert r["candidates"] == 2 and r["points"] == 2


def test_protocol_table_smoke(tmp_path):
    r = run_smoke("protocol_table", tmp_path)
    assert r["name"] == "protocol_table"
    assert set(r["arms"]) == {"fixed", "sgd_tuned", "ridge", "sklearn"}
    for arm in r["arms"].values():
        assert len(arm["mean_error"]) == 2 and all(0 <= e <= 1 for e in arm["mean_error"])


def _lcdb_csv_installed() -> bool:
    """LCDB's CSV is there (found, not imported: ``import lcdb`` needs undeclared packages)."""
    spec = importlib.util.find_spec("lcdb")
    locations = list(spec.submodule_search_locations or []) if spec else []
    return bool(locations) and (Path(locations[0]) / "database-accuracy.csv").is_file()


@pytest.mark.skipif(
    not _lcdb_csv_installed(),
    reason="needs LCDB 1.0's CSV: pip install -e '.[bench]' (the lcdb package; make venv does)",
)
def test_extrapolation_smoke(tmp_path):
    # a fresh CAULK_CACHE: the parquet cache is built from the 150 MB CSV (seconds) and used
    r = run_smoke("extrapolation", tmp_path, "--out", str(tmp_path / "r.json"))
    assert json.loads((tmp_path / "r.json").read_text()) == r
    assert r["name"] == "extrapolation_lcdb" and r["curves"] == 6 and r["replicates"] == 20
    assert r["skipped_curves"]["walked"] >= r["curves"]
    assert r["methods"] == ["auto", "pow4", "mmf4", "pow3"]
    assert set(r["metrics"]) == {"4x", "8x"}
    for setting in r["metrics"].values():
        assert set(setting) == {*r["methods"], "auto>4x", "auto>16x"}
        auto, far = setting["auto"], setting["auto>4x"]  # withholding only turns ok into at_least
        assert far["cases"] == auto["cases"] and far["answered_finite"] <= auto["answered_finite"]
        assert far["at_least"] - auto["at_least"] == pytest.approx(
            (auto["answered_finite"] - far["answered_finite"]) / auto["cases"]
        )
        for m in setting.values():
            assert 0 < m["cases"] <= r["curves"]
            assert 0 <= m["answered_finite"] <= m["cases"] and 0 <= m["with_interval"] <= m["cases"]
            shares = ("within_2x", "coverage", "unreachable", "not_determinable", "unbounded_above")
            for share in shares:
                assert math.isnan(m[share]) or 0 <= m[share] <= 1, (share, m)
            assert math.isnan(m["median_abs_log2"]) or m["median_abs_log2"] >= 0
    assert set(r["goals"]) == {
        "coverage_4x", "coverage_8x", "auto_median_below_every_fixed_family", "unreachable",
        "not_determinable",
    }  # fmt: skip
    for setting, by_method in r["paired_medians"].items():
        assert setting in ("4x", "8x") and set(by_method) <= {"pow4", "mmf4", "pow3"}
        for m, v in by_method.items():
            assert 0 <= v["cases"] <= r["curves"] and {"auto", m} <= set(v)
    assert r["timing"]["source"] == "csv (cache built)"
    assert (tmp_path / "cache" / "lcdb").is_dir()
    assert_positive(r["timing"], "total_s")
    assert_positive(r["machine"], "cores")


def test_coverage_smoke(tmp_path):
    r = run_smoke("coverage", tmp_path, "--out", str(tmp_path / "r.json"))
    assert r["benchmark"] == "coverage" and r["trials"] == 2 and r["replicates"] == 30
    rows = r["table"]
    assert {(row["target"], row["truth"]) for row in rows} == {
        (t, truth) for t in ("in range", "4x beyond") for truth in ("pow3", "mmf4", "pooled")
    }
    for row in rows:
        assert 0 <= row["coverage"] <= 1 and row["cases"] == (4 if row["truth"] == "pooled" else 2)
    assert isinstance(r["goal_met"], bool) and r["cpu"]


def test_analysis_speed_smoke(tmp_path):
    r = run_smoke("analysis_speed", tmp_path)
    assert r["records"] == 2 * 7 * 3 and r["answers"] == 2 * 2
    assert r["seconds"] > 0 and r["ms_per_record"] > 0 and isinstance(r["goal_met"], bool)


def test_probe_seeds_smoke(tmp_path):
    r = run_smoke("probe_seeds", tmp_path)
    assert r["benchmark"] == "probe_seeds" and r["points"] == 4 * 4  # 4 n x 4 seeds, all ok
    assert sorted(r["truth"], key=int) == ["10", "20", "40", "80"]
    rows = r["table"]
    assert {(row["target"], row["seeds"]) for row in rows} == {
        (t, 3) for t in ("in range", "2x beyond", "4x beyond")
    }
    for row in rows:
        assert row["cases"] == 1 and 0 <= row["coverage"] <= 1
    assert_positive(r, "train_seconds", "seconds")


def test_split_coverage_smoke(tmp_path):
    r = run_smoke("split_coverage", tmp_path)
    assert r["benchmark"] == "split_coverage" and r["points"] == 2 * 3 * 4 and r["test_sets"] == 2
    assert {row["arm"] for row in r["table"]} == {"test rows + seeds", "seeds only"}
    for row in r["table"]:
        assert row["cases"] == 2 and 0 <= row["coverage"] <= 1
    assert_positive(r, "train_seconds", "seconds")


def test_threads_smoke(tmp_path):
    r = run_smoke("threads", tmp_path)
    assert r["name"] == "threads" and set(r["cells"]) == {"train", "caulk"}
    for by_setting in r["cells"].values():
        cell = by_setting["caulk"]
        assert len(cell["alone"]["per_process"]) == 1 and len(cell["shared"]["per_process"]) == 2
        assert_positive(cell["alone"], "each_s")
        assert_positive(cell["shared"], "each_s")
    for proc in r["cells"]["train"]["caulk"]["shared"]["per_process"]:  # caulk's own choice
        assert proc["settings"]["omp_wait_policy"] == "PASSIVE"
        assert proc["torch_threads"] >= 1 and proc["settings"]["source"] == "cpus"
    assert r["threads"]["omp_wait_policy"] == "PASSIVE"  # every benchmark JSON says its threads


def test_suffix_smoke(tmp_path):
    r = run_smoke("suffix", tmp_path)
    assert r["name"] == "batched_suffix_lora_sweep"
    assert_positive(r, "ratio", "per_point_s", "batched_s")
    femto = r["models"]["vit_femto"]
    assert femto["train_loops"] == ["batched_suffix", "cached"] and femto["points"] == 2
    assert r["same_selected_lr"] and r["max_test_error_diff"] <= 1e-5


def test_suffix_throughput_smoke(tmp_path):
    r = run_smoke("suffix_throughput", tmp_path)
    assert r["name"] == "batched_suffix_throughput" and r["device"] == "cpu"
    assert set(r["ks"]) == {"2", "4"}
    for k, cell in r["ks"].items():
        assert cell["batched"]["train_loop"] == ["batched_suffix"]
        assert cell["per_point"]["train_loop"] == ["cached"]
        for engine in ("batched", "per_point"):
            assert cell[engine]["points"] == int(k)
            assert_positive(cell[engine], "seconds", "images_per_s", "peak_mib")


def test_adaptive_smoke(tmp_path):
    out = tmp_path / "r.json"
    r = run_smoke("adaptive", tmp_path, "--out", str(out))
    assert r["name"] == "adaptive_planted" and r["trials_per_truth"] == 1
    assert set(r["pooled"]) == {
        "adaptive, value rule",
        "adaptive, value rule, cost ∝ n",
        "adaptive, n* rule",
        "adaptive, bracket rule",
        "grid 7 n",
        "smallest precise grid",
    }
    for arm in r["pooled"].values():
        assert arm["trials"] == 1 and 0 <= arm["coverage"] <= 1 and arm["mean_points"] > 0
    assert_positive(r, "examples_ratio_vs_smallest_grid", "points_ratio_vs_smallest_grid")
    assert json.loads(out.read_text())["provenance"]["command"] == r["provenance"]["command"]


def test_adaptive_ratio_smoke(tmp_path):
    r = run_smoke("adaptive_ratio", tmp_path)
    assert r["name"] == "adaptive_ratio" and r["factor"] == 3.0 and r["trials_per_truth"] == 1
    pooled = r["pooled"]
    assert pooled["trials"] == 1 and 0 <= pooled["coverage"] <= 1 and pooled["mean_points"] >= 24
    assert sum(r["stops"].values()) == 1


def test_zoo_build_smoke(tmp_path):
    r = run_smoke("zoo_build", tmp_path)
    assert r["name"] == "zoo_build_parallel" and r["workers"] == min(2, usable_cpus())
    assert_positive(r, "ratio")
    entries = {"caulk_vit_femto m=0", "caulk_vit_femto m=40"}
    assert set(r["sequential"]["entries"]) == set(r["parallel"]["entries"]) == entries
    share = max(1, usable_cpus() // r["workers"])  # each worker's share of the threads
    assert {e["torch_threads"] for e in r["parallel"]["entries"].values()} == {share}
