"""Adapter-only checkpoints: the trained caulk as safetensors (trainable tensors + config).

``export_adapter`` writes what training changed (see ``TransferModule.trainable_state_dict``)
with the PEFT config, head size and architecture in the file's metadata; ``load_adapter``
re-applies the method to a fresh frozen backbone and loads the tensors, giving the same
predictions as the trained model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import OmegaConf
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from caulk import __version__
from caulk.atomic import write_atomic
from caulk.errors import CaulkConfigError
from caulk.peft.base import apply_peft, arch_name

if TYPE_CHECKING:  # annotations only: importing caulk.module here would be a cycle (see below)
    from caulk.module import TransferModule

ADAPTER_NAME = "adapter.safetensors"
METADATA_KEY = "caulk_adapter"
FORMAT_VERSION = 1


def export_adapter(module: TransferModule, path: str | Path) -> Path:
    """Write ``module``'s trainable tensors and config to ``path`` atomically; returns the path."""
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.trainable_state_dict().items()}
    meta = {
        "format": FORMAT_VERSION,
        "peft": OmegaConf.to_container(OmegaConf.create(module.method.cfg), resolve=True),
        "arch": arch_name(module.backbone),
        "num_classes": int(module.head[-1].out_features),
        "head_norm": isinstance(module.head[0], nn.BatchNorm1d),
        "caulk_version": __version__,
    }
    metadata = {METADATA_KEY: json.dumps(meta)}
    return write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def read_adapter(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and the caulk metadata of an adapter file."""
    path = Path(path)
    if not path.is_file():
        raise CaulkConfigError(f"adapter file not found: {path}")
    with safe_open(str(path), framework="pt") as f:
        raw = (f.metadata() or {}).get(METADATA_KEY)
        if raw is None:
            raise CaulkConfigError(f"{path} is not a caulk adapter (no {METADATA_KEY} metadata)")
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is no mapping)
    return tensors, json.loads(raw)


def load_adapter(path: str | Path, backbone: nn.Module) -> TransferModule:
    """Apply the saved method to the fresh ``backbone``, load the saved tensors; eval mode."""
    # import cycle: caulk.module -> caulk.cache.prefix -> caulk.peft (package) -> this module
    from caulk.module import TransferModule

    tensors, meta = read_adapter(path)
    arch = arch_name(backbone)
    if meta["arch"] != arch:
        raise CaulkConfigError(f"adapter {path} was trained on {meta['arch']}, not {arch}")
    method = apply_peft(backbone, OmegaConf.create(meta["peft"]))
    module = TransferModule(backbone, method, meta["num_classes"], head_norm=meta["head_norm"])
    state = module.trainable_state_dict()
    if state.keys() != tensors.keys():
        missing = sorted(state.keys() - tensors.keys())
        extra = sorted(tensors.keys() - state.keys())
        raise CaulkConfigError(
            f"adapter {path} does not fit: {len(missing)} tensors missing "
            f"(first: {missing[:1]}), {len(extra)} unexpected (first: {extra[:1]})"
        )
    with torch.no_grad():
        for k, t in tensors.items():
            if state[k].shape != t.shape:
                raise CaulkConfigError(
                    f"adapter {path}: {k} has shape {tuple(t.shape)}, expected {tuple(state[k].shape)}"
                )
            state[k].copy_(t)
    return module.eval()
