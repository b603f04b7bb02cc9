"""Shared fixtures: Hydra config composition (once per override set) and CLI runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "conf"


def compose_cfg(overrides: list[str] | None = None, output_dir: Path | None = None) -> DictConfig:
    """Compose conf/train.yaml like the CLI does; outputs go to ``output_dir``."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides or []))
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir) if output_dir else "/nonexistent-output-dir"
    return cfg


#: the fixed-step recipe (SGD probe, trainer.max_steps steps, one config per point) that the
#: tests counting steps, checkpoints and resumes exercise; not the default protocol (a ridge
#: probe, a budget growing with n, LoRA's lr grid). ``++``: only the linear probe has a solver.
FIXED_RECIPE = ["++peft.solver=sgd", "budget.mode=fixed", "tune=none"]

FAST = [
    *FIXED_RECIPE,
    "trainer.max_steps=6",
    "trainer.val_check_interval=3",
    "trainer.enable_progress_bar=false",
    "logger=csv",
]


@pytest.fixture
def fast_cfg(tmp_path):
    """A factory for small, quick configs writing into a fresh tmp dir."""

    def make(*overrides: str, out: Path | None = None) -> DictConfig:
        merged = {o.split("=", 1)[0]: o for o in [*FAST, *overrides]}  # later overrides win
        return compose_cfg(list(merged.values()), out or tmp_path / "run")

    return make


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    env.update(extra)
    return env


def run_cli(
    args: list[str],
    env: dict[str, str] | None = None,
    timeout: int = 300,
    recipe: tuple[str, ...] | list[str] = tuple(FIXED_RECIPE),
):
    """Run ``python -m caulk.train [FLAGS] [RECIPE] OVERRIDES`` from the repo root (``args``'
    flags first: Hydra takes no ``-m`` after an override); returns the CompletedProcess. The
    ``recipe`` comes before ``args``' overrides, so they override it; ``()``: the defaults."""
    flags = [a for a in args if a.startswith("-") and "=" not in a]
    overrides = [a for a in args if a not in flags]
    return subprocess.run(
        [sys.executable, "-m", "caulk.train", *flags, *recipe, *overrides],
        cwd=REPO,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A real single-node Slurm cluster booted for the session (skips, with the reason, if it can't)."""
    from tests.slurm_cluster import SlurmCluster

    reason = SlurmCluster.unavailable()
    if reason:
        pytest.skip(reason)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except (RuntimeError, TimeoutError) as e:
        cluster.stop()
        pytest.skip(f"could not boot the Slurm test cluster: {str(e)[:500]}")
    yield cluster
    cluster.stop()
