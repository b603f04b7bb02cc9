"""Process-wide torch settings that only remove overhead (results never change)."""

from __future__ import annotations

import ctypes
import os
from functools import cache


@cache
def _nvml_loads() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


def skip_nvml_check_without_driver() -> None:
    """Turn off torch's NVML-based CUDA check where no NVML library exists (no NVIDIA driver).

    lightning_fabric sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` on import; torch then dlopens NVML
    on every ``torch.cuda.is_available()``, which its optimizers call every step. Without the
    library that check fails and falls back to the runtime count, the same answer the plain
    check gives, so this changes nothing but the ~0.2 ms each optimizer step spent failing to
    load it. Where NVML loads (a GPU machine) Lightning's setting stays.
    """
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == "1" and not _nvml_loads():
        os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "0"
