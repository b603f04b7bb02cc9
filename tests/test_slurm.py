"""Sweeps through ``hydra/launcher=slurm`` (submitit) on a real Slurm cluster booted by a fixture."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import FIXED_RECIPE, REPO, cli_env
from tests.test_resume import RESULT_KEYS

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SLURM = [
    *FIXED_RECIPE,
    "hydra/launcher=slurm",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.timeout_min=15",
    "hydra.callbacks.analyze.enabled=false",
]


def _launch(args: list[str], cluster, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "caulk.train", "-m", *SLURM, *args],
        cwd=REPO,
        env=cli_env(**cluster.env, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _records(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(sweep.glob("*/record.json"))}


def test_a_multirun_sweep_runs_as_slurm_jobs(slurm_cluster, tmp_path):
    sweep = tmp_path / "sweep"
    proc = _launch(["debug=fast", "data.n=20,40", f"hydra.sweep.dir={sweep}"], slurm_cluster)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-4000:] + slurm_cluster.logs()
    records = _records(sweep)
    assert sorted(records) == ["0", "1"]
    for job, n in (("0", 20), ("1", 40)):
        r = records[job]
        assert r["status"] == "ok", r.get("message")
        assert (r["n"], r["n_train_seen"], r["n_test"]) == (n, n, 450)
        assert 0.0 <= r["test_error"] <= 1.0
        assert r["output_dir"] == str((sweep / job).resolve())
    logs = list((sweep / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2  # one Slurm array task per sweep point
    assert "Submitit 'slurm' sweep output dir" in out


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            out = proc.communicate()[0] if proc.poll() is not None else ""
            pytest.fail(f"{path} never appeared: {out[-4000:]}")
        time.sleep(0.2)


def test_a_preempted_job_is_requeued_and_resumes_to_the_uninterrupted_result(
    slurm_cluster, tmp_path
):
    """Job 0 is preempted (USR2, as Slurm does) after its step-5 checkpoint; job 1 is the same
    point run through. Job 0 is requeued, resumes from last.ckpt and its W&B run, and ends with
    job 1's result."""
    sweep = tmp_path / "sweep"
    args = [
        "trainer.max_steps=14",
        "trainer.val_check_interval=5",
        "trainer.enable_progress_bar=false",
        "data.n=50",
        "logger=default",
        "logger.wandb.enabled=true",
        "+callbacks.preempt._target_=tests.helpers.WaitForPreemption",
        "+tag=a,b",  # two jobs, the same training
        f"hydra.sweep.dir={sweep}",
    ]
    proc = _launch(args, slurm_cluster, CAULK_TEST_PREEMPT_AT="7", CAULK_TEST_PREEMPT_JOB="0")
    try:
        _wait_for(sweep / "0" / "waiting", proc)
        job_id = (sweep / "0" / "waiting").read_text().strip()
        assert (sweep / "0" / "checkpoints" / "last.ckpt").is_file()
        signal = subprocess.run(
            ["scancel", "--signal=USR2", job_id],
            env=cli_env(**slurm_cluster.env),
            capture_output=True,
            text=True,
        )
        assert signal.returncode == 0, signal.stderr
        slurm_cluster.start_requeued_now(job_id)
        out, _ = proc.communicate(timeout=600)
        (tmp_path / "launcher.out").write_text(out)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-4000:] + slurm_cluster.logs()
    records = _records(sweep)
    cut, whole = records["0"], records["1"]
    assert cut["status"] == whole["status"] == "ok"
    assert cut["resumed_from"] == str((sweep / "0" / "checkpoints" / "last.ckpt").resolve())
    assert whole["resumed_from"] is None
    assert {k: cut[k] for k in RESULT_KEYS} == {k: whole[k] for k in RESULT_KEYS}
    wa, wb = load_file(cut["adapter_file"]), load_file(whole["adapter_file"])
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # both attempts logged to one W&B run (offline: one run dir per attempt, the same run id)
    runs = sorted((sweep / "0" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and len({r.name.rsplit("-", 1)[1] for r in runs}) == 1
    log = "\n".join(p.read_text() for p in (sweep / ".submitit").glob("*/*_log.err"))
    assert "Caught signal SIGUSR2" in log and "preempted" in log


def test_each_adaptive_job_runs_its_rounds_inside_its_one_slurm_task(slurm_cluster, tmp_path):
    sweep = tmp_path / "sweep"
    slurm = [a for a in SLURM if a not in FIXED_RECIPE]  # the default ridge probe
    args = ["peft=linear", "curve.n=auto", "curve.target_error=0.2,0.3", "curve.precision=1.6"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "caulk.train", "-m", *slurm, *args, "logger=csv",
         "trainer.enable_progress_bar=false", f"hydra.sweep.dir={sweep}"],
        cwd=REPO, env=cli_env(**slurm_cluster.env), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:] + slurm_cluster.logs()
    logs = sorted((sweep / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2  # one Slurm array task per job, however many rounds it ran
    for job, target in (("0", 0.2), ("1", 0.3)):
        trace = json.loads((sweep / job / "adaptive.json").read_text())
        assert trace["spec"]["targets"] == [target]
        assert len(trace["rounds"]) >= 2
        records = [json.loads(p.read_text()) for p in (sweep / job).glob("n*_s*/record.json")]
        assert len(records) == trace["rounds"][-1]["points_so_far"]
        assert all(r["status"] == "ok" for r in records)
    printed = "".join(p.read_text() for p in logs)
    assert printed.count("[adaptive] n*(") == 2
