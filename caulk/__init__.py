"""caulk: downstream scaling curves for frozen timm backbones with pluggable PEFT modules.

For notebooks: ``caulk.run_train(overrides)`` trains as ``python -m caulk.train`` would and returns
the records; ``caulk.load(*sweep_dirs)`` reads records back as a table (see ``caulk.api``).
"""

import importlib
import os
import sys

__version__ = "0.1.0"
#: public names of submodules, imported on first use so that ``import caulk`` stays light
_LAZY = {"run_train": "caulk.api", "load": "caulk.api"}
__all__ = ["__version__", "load", "run_train"]

# Waiting OpenMP threads sleep rather than spin (caulk.threads: why, and how to opt out). Only
# here, before torch loads: its OpenMP runtime reads the variable once, at start.
if not {"OMP_WAIT_POLICY", "torch"} & (set(os.environ) | set(sys.modules)) and (
    os.environ.get("CAULK_THREADS") != "off"
):
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'caulk' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
