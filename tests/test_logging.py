"""W&B: auto mode falls back to offline with one warning; one run per job; ids fixed per job dir."""

import warnings

import pytest

from caulk.errors import CaulkConfigError
from caulk.loggers import deterministic_run_id, resolve_wandb_mode
from caulk.train import train


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "home" / ".netrc"))


def test_auto_without_credentials_goes_offline_with_one_warning(no_credentials):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert resolve_wandb_mode("auto") == "offline"
    assert len([w for w in caught if "W&B" in str(w.message)]) == 1


def test_auto_with_an_api_key_goes_online(no_credentials, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_wandb_mode("auto") == "online"


def test_wandb_mode_env_var_wins_and_bad_mode_is_rejected(no_credentials, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_wandb_mode("online") == "disabled"
    with pytest.raises(CaulkConfigError, match="logger.wandb.mode='sometimes'"):
        resolve_wandb_mode("sometimes")


def test_run_id_is_deterministic_per_job_dir(tmp_path):
    assert deterministic_run_id(tmp_path / "a") == deterministic_run_id(tmp_path / "a")
    assert deterministic_run_id(tmp_path / "a") != deterministic_run_id(tmp_path / "b")


def test_two_jobs_in_one_process_get_two_finished_offline_runs(fast_cfg, tmp_path, no_credentials):
    import wandb

    outs = [tmp_path / "job0", tmp_path / "job1"]
    for i, out in enumerate(outs):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rec = train(fast_cfg("logger=default", "data.n=20", f"seed={i}", out=out))
        assert rec["status"] == "ok"
        assert wandb.run is None  # finished in train()'s finally
        assert len([w for w in caught if "no W&B credentials" in str(w.message)]) == 1
    dirs = [list((o / "wandb").glob("offline-run-*")) for o in outs]
    assert [len(d) for d in dirs] == [1, 1]
    for out, d in zip(outs, dirs, strict=True):
        assert d[0].name.endswith(deterministic_run_id(out))
        assert (d[0] / f"run-{deterministic_run_id(out)}.wandb").is_file()
