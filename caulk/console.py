"""A quiet console: Lightning's and timm's lines that do not apply to caulk's design are dropped
at the source.

``quiet_console()`` installs a ``logging.Filter`` on the loggers Lightning prints its banners
and tips through (and timm its weight loading: the record names the weights file), and
``warnings`` filters for the warnings that caulk's design makes moot.
``--verbose`` on the command line (``run_cli`` turns it into ``CAULK_VERBOSE=1``), the env var
``CAULK_VERBOSE=1`` or ``hydra.verbose=true`` bring them all back.
"""

from __future__ import annotations

import logging
import os
import re
import warnings

from hydra.core.hydra_config import HydraConfig

VERBOSE_ENV = "CAULK_VERBOSE"
#: the loggers Lightning's rank-zero infos and accelerator lines go through (both package names),
#: and timm's weight loading
NOISY_LOGGERS = (
    *(
        f"{package}.{module}"
        for package in (
            "pytorch_lightning",
            "lightning.pytorch",
            "lightning_fabric",
            "lightning.fabric",
        )
        for module in ("utilities.rank_zero", "accelerators.cuda")
    ),
    "timm.models._builder",
    "timm.models._helpers",
)
#: info lines: upsell tips, accelerator banners (the record names the device), the step budget
#: ending the fit (caulk's design: every point trains its budget), the CUDA_VISIBLE_DEVICES echo,
#: timm loading a weights file (the record's weights_file)
NOISE = re.compile(
    r"💡 Tip:|(GPU|TPU|HPU|IPU) available: |`Trainer\.(fit|validate|test)` stopped: `max_"
    r"|LOCAL_RANK: \d+ - CUDA_VISIBLE_DEVICES"
    r"|Loading pretrained weights from |Loaded .* from checkpoint"
)
#: warnings about choices caulk makes on purpose
NOISE_WARNINGS = (
    r"You defined a `validation_step` but have no `val_dataloader`",  # pre-training: no val loop
    r".*module\(s\) in eval mode",  # the frozen backbone is in eval mode on purpose
    r".*smaller than the logging interval",  # tiny n: epochs shorter than the log interval
    r".*isinstance\(treespec, LeafSpec\)",  # Lightning's own deprecation, nothing to do for caulk
    r".*The `srun` command is available on your system",  # caulk's Slurm support: docs/cluster.md
)


class ConsoleNoise(logging.Filter):
    """Drops the log records whose message matches ``NOISE``."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False (drop) for Lightning's noise, True for every other record."""
        return NOISE.search(record.getMessage()) is None


_FILTER = ConsoleNoise()


def verbose_requested() -> bool:
    """Whether the user asked for Lightning's lines: ``CAULK_VERBOSE=1`` (``--verbose``) or, in a
    Hydra job, ``hydra.verbose`` set."""
    if os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes"):
        return True
    return HydraConfig.initialized() and bool(HydraConfig.get().verbose)


def quiet_console(verbose: bool | None = None) -> None:
    """Silence Lightning's tips, banners and moot warnings and timm's weight loading lines;
    ``verbose`` brings them back (None:
    ``verbose_requested()``). Safe to call again: the latest call decides."""
    verbose = verbose_requested() if verbose is None else verbose
    for name in NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if verbose:
            logger.removeFilter(_FILTER)
        else:
            logger.addFilter(_FILTER)  # a no-op when already there
    for message in NOISE_WARNINGS:  # inserted first, so it wins over an earlier call's
        warnings.filterwarnings("default" if verbose else "ignore", message=message)
