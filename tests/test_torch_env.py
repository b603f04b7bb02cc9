"""Process-wide torch settings: they remove overhead and never change an answer."""

import ctypes
import os

import pytest
import torch

from caulk import torch_env


def _nvml_library_loads() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


def test_lightnings_nvml_check_is_dropped_only_where_nvml_cannot_load(monkeypatch):
    import lightning_fabric  # noqa: F401  (sets PYTORCH_NVML_BASED_CUDA_CHECK=1 on import)

    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    before = torch.cuda.is_available()
    torch_env.skip_nvml_check_without_driver()
    assert os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == ("1" if _nvml_library_loads() else "0")
    assert torch.cuda.is_available() == before  # the answer never changes


@pytest.mark.parametrize("setting", ["0", None])
def test_a_check_the_user_set_otherwise_is_left_alone(monkeypatch, setting):
    if setting is None:
        monkeypatch.delenv("PYTORCH_NVML_BASED_CUDA_CHECK", raising=False)
    else:
        monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", setting)
    torch_env.skip_nvml_check_without_driver()
    assert os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == setting


def test_where_nvml_loads_lightnings_setting_stays(monkeypatch):
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    monkeypatch.setattr(torch_env, "_nvml_loads", lambda: True)  # a machine with a driver
    torch_env.skip_nvml_check_without_driver()
    assert os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == "1"


def test_a_training_run_drops_the_failing_check(fast_cfg, monkeypatch):
    from caulk.train import train

    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    train(fast_cfg("trainer.max_steps=2", "data.n=20"))
    assert os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == ("1" if _nvml_library_loads() else "0")
