"""caulk.threads: a CPU share per process, sleeping OpenMP waits, every setting overridable and
recorded; bad values are one-line errors."""

import json
import os
import subprocess
import sys

import pytest
import torch

from caulk import threads
from caulk.errors import CaulkConfigError
from tests.conftest import REPO, cli_env


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _clean(monkeypatch, **env):
    for k in ("OMP_NUM_THREADS", "CAULK_THREADS", "SLURM_CPUS_PER_TASK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)


def test_the_share_is_the_usable_cpus_over_the_local_processes(monkeypatch, restore_threads):
    cpus = len(os.sched_getaffinity(0))
    _clean(monkeypatch)
    assert threads.configure().torch_threads == cpus == torch.get_num_threads()
    _clean(monkeypatch, LOCAL_WORLD_SIZE=str(2 * cpus))  # more processes than CPUs: one each
    assert threads.configure().torch_threads == 1
    _clean(monkeypatch, SLURM_CPUS_PER_TASK="1")
    s = threads.configure()
    assert (s.torch_threads, s.source) == (1, "SLURM_CPUS_PER_TASK")


def test_the_users_settings_win(monkeypatch, restore_threads):
    _clean(monkeypatch, OMP_NUM_THREADS="1", LOCAL_WORLD_SIZE="1")
    assert threads.configure().fields()["source"] == "OMP_NUM_THREADS"
    _clean(monkeypatch, CAULK_THREADS="1")
    assert threads.configure().torch_threads == 1 == torch.get_num_threads()
    torch.set_num_threads(2)
    _clean(monkeypatch, CAULK_THREADS="off")
    assert threads.configure().torch_threads == 2  # untouched


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_thread_count_is_a_one_line_error(monkeypatch, value):
    _clean(monkeypatch, CAULK_THREADS=value)
    with pytest.raises(
        CaulkConfigError, match=f"CAULK_THREADS must be off or a thread count >= 1, got '{value}'"
    ):
        threads.configure()


def _policy_after(code: str, **env) -> str:
    clean = {
        k: v
        for k, v in cli_env(**env).items()
        if k != "OMP_WAIT_POLICY" or "OMP_WAIT_POLICY" in env
    }
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=clean,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_importing_caulk_before_torch_makes_waiting_threads_sleep():
    show = "import os; print(os.environ.get('OMP_WAIT_POLICY', 'unset'))"
    assert _policy_after(f"import caulk; {show}") == "PASSIVE"
    assert _policy_after(f"import caulk; {show}", OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"
    assert _policy_after(f"import caulk; {show}", CAULK_THREADS="off") == "unset"
    # too late once torch has loaded its OpenMP runtime: caulk says nothing it cannot do
    assert _policy_after(f"import torch, caulk; {show}") == "unset"


def test_a_record_says_its_threads(fast_cfg, tmp_path):
    from caulk.train import train

    record = train(fast_cfg(out=tmp_path / "run"))
    saved = json.loads((tmp_path / "run" / "record.json").read_text())
    assert saved["torch_threads"] == record["torch_threads"] == torch.get_num_threads() >= 1
    assert saved["omp_wait_policy"] == os.environ.get("OMP_WAIT_POLICY", "default")
