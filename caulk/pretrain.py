"""The source stage: pre-train a timm backbone on a source task of size m into caulk's zoo.

``python -m caulk.pretrain model=vit_nano model.source_m=20000`` trains ``caulk_vit_nano`` on
20000 generated glyph images (``source_task=glyphs``) or on a user's ImageFolder
(``source_task=imagefolder source_task.root=DIR``), deterministically from ``model.source_seed``, and
saves the backbone (safetensors, without the source head) plus metadata into
``paths.zoo_dir``. ``python -m caulk.train model.weights=zoo model.source_m=20000`` loads that
very entry (building it first if it is missing). ``source_m=0`` stores the random initialisation.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from caulk.backbones import check_arch
from caulk.cli import CONFIG_DIR, announce_job, reject_job, run_cli
from caulk.console import quiet_console
from caulk.errors import CaulkConfigError
from caulk.threads import configure as configure_threads
from caulk.zoo.build import build_zoo_entry, check_source_cfg
from caulk.zoo.store import ensure_entry, entry_for

log = logging.getLogger("caulk.pretrain")
quiet_console()  # at import too: pretrain() used as a library is as quiet as the command line


def pretrain(cfg: DictConfig) -> dict[str, Any]:
    """Build (or find) the zoo entry of ``cfg.model`` under ``cfg.source_task``; return its metadata."""
    check_arch(cfg.model.arch)
    check_source_cfg(cfg.model, cfg.source_task)
    configure_threads()  # this process's share of the CPUs (caulk.threads), as caulk.train's
    entry = entry_for(cfg.model, cfg.source_task, cfg.paths.zoo_dir)
    meta, built = ensure_entry(
        entry,
        lambda: build_zoo_entry(
            cfg.model, cfg.source_task, entry, progress_bar=bool(cfg.get("progress_bar", True))
        ),
    )
    return {**meta, "built": built}


def format_entry(meta: dict[str, Any]) -> str:
    """A short summary of a zoo entry."""
    how = "pre-trained now" if meta.get("built") else "already in the zoo"
    return "\n".join(
        [
            f"caulk zoo entry ({how})",
            f"  name             {meta['name']}",
            f"  arch             {meta['arch']} ({meta['num_params']:,} params)",
            f"  source           {meta['source']['name']}, m={meta['source_m']}, seed {meta['source_seed']}",
            f"  source accuracy  {meta['source_accuracy']:.4f} ({meta['source_classes']} classes)",
            f"  weights          {meta['weights_file']}",
        ]
    )


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="pretrain")
def hydra_main(cfg: DictConfig) -> None:
    """``python -m caulk.pretrain [overrides]``: build (or find) the zoo entry, print it."""
    quiet_console()  # again: hydra.verbose is known only now
    announce_job()
    try:
        meta = pretrain(cfg)
    except CaulkConfigError as e:
        reject_job(e, cfg.paths.output_dir)
        return
    print(format_entry(meta), flush=True)
    OmegaConf.save(cfg, Path(cfg.paths.output_dir) / "pretrain_config.yaml")


def main() -> None:
    """``python -m caulk.pretrain [overrides]``."""
    run_cli(hydra_main, config_name="pretrain")


if __name__ == "__main__":
    main()
