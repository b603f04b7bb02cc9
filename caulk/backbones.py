"""Frozen timm backbones: creation from hub, local file or random init, with strict checks."""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import timm
import torch
from huggingface_hub import try_to_load_from_cache
from torch import nn

from caulk.config import check_section
from caulk.errors import CaulkConfigError
from caulk.zoo import models as _zoo_models  # noqa: F401  (registers caulk's own small timm architectures)
from caulk.zoo.build import build_zoo_entry, check_source_cfg
from caulk.zoo.store import ensure_entry, entry_for

WEIGHT_SOURCES = ("hub", "file", "zoo", "none")
WEIGHT_FILE_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


@dataclass
class Backbone:
    """A timm feature extractor (``num_classes=0``) and what it was built from."""

    model: nn.Module
    arch: str
    tag: str | None
    weights: str
    weights_file: str | None
    data_config: dict[str, Any]
    zoo_meta: dict[str, Any] | None = None  # the zoo entry's metadata (weights=zoo)

    @property
    def num_features(self) -> int:
        return int(self.model.num_features)

    @property
    def backbone_tag(self) -> str:
        return f"{self.arch}.{self.tag}" if self.tag else self.arch


def check_arch(arch: str) -> None:
    """Raise CaulkConfigError unless ``arch`` is in timm's registry."""
    if not timm.is_model(arch):
        raise CaulkConfigError(
            f"unknown timm architecture model.arch={arch!r} (see timm.list_models())"
        )


def check_backbone_cfg(model_cfg: Any) -> None:
    """Validate a ``model`` config without building anything; raises CaulkConfigError.

    Types and ranges (seeds, source size) are the schema's (``caulk.config``); here: the
    architecture and weights source are known and a weights file exists.
    """
    check_arch(model_cfg.arch)
    weights = model_cfg.weights
    if weights not in WEIGHT_SOURCES:
        raise CaulkConfigError(
            f"unknown weights source model.weights={weights!r}; expected one of {', '.join(WEIGHT_SOURCES)}"
        )
    check_section("model", model_cfg)
    if weights == "zoo" and model_cfg.get("source_m") is None:
        raise CaulkConfigError(
            "model.weights=zoo needs model.source_m=M (an integer >= 0), got None"
        )
    if weights == "file":
        path = model_cfg.get("weights_file")
        if not path:
            raise CaulkConfigError("model.weights=file needs model.weights_file=PATH")
        if not Path(path).is_file():
            raise CaulkConfigError(f"weights file not found: {path}")
        if not str(path).endswith(WEIGHT_FILE_SUFFIXES):
            raise CaulkConfigError(
                f"weights file {path} must end in one of {', '.join(WEIGHT_FILE_SUFFIXES)}"
            )


def _hub_error(name: str, reason: str) -> CaulkConfigError:
    return CaulkConfigError(
        f"cannot load hub weights for {name} ({reason}); offline remedies: "
        f"model.weights=file model.weights_file=PATH (a local .safetensors/.pth) or model.weights=none (random init)"
    )


def _summarize_load_error(message: str) -> str:
    missing = re.search(r"Missing key\(s\) in state_dict: (.*?)\.\s*$", message, re.M)
    mismatch = re.findall(r"size mismatch for ([\w.]+)", message)
    parts = []
    if missing:
        keys = re.findall(r'"([^"]+)"', missing.group(1))
        parts.append(f"{len(keys)} backbone tensors missing (first: {keys[0] if keys else '?'})")
    if mismatch:
        parts.append(f"{len(mismatch)} tensors of another shape (first: {mismatch[0]})")
    return "; ".join(parts) or message.strip().splitlines()[0][:200]


def _check_file_matches(model: nn.Module, path: str, arch: str) -> None:
    """Fail if the file lacks tensors the backbone needs (timm loads non-strictly once the head is dropped)."""
    file_keys = set(timm.models.load_state_dict(path).keys())
    model_keys = set(model.state_dict().keys())
    missing = sorted(model_keys - file_keys)
    if missing:
        raise CaulkConfigError(
            f"weights file {path} does not fit {arch}: {len(missing)} of {len(model_keys)} "
            f"backbone tensors missing (first: {missing[0]})"
        )


def create_backbone(
    model_cfg: Any, source_cfg: Any = None, zoo_dir: str | Path | None = None
) -> Backbone:
    """Build the frozen-to-be timm feature extractor described by a ``model`` config.

    ``weights=zoo`` needs the source recipe (``source_cfg``, the ``source_task`` config group) and
    ``zoo_dir``: the entry for (arch, kwargs, source_m, source_seed) is pre-trained first if the
    zoo lacks it, then loaded through the same local-file path as ``weights=file``.
    """
    check_backbone_cfg(model_cfg)
    arch, tag, weights = model_cfg.arch, model_cfg.get("tag"), model_cfg.weights
    name = f"{arch}.{tag}" if tag else arch
    kwargs = dict(model_cfg.get("kwargs") or {})
    weights_file, zoo_meta = None, None
    if weights == "none":
        # the random backbone is fixed by model.init_seed, not by the run seed: a curve's points
        # (n, seed) all adapt the same network, in one process or in many
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(model_cfg.get("init_seed", 0)))
            model = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    elif weights in ("file", "zoo"):
        if weights == "zoo":
            zoo_meta = _zoo_entry(model_cfg, source_cfg, zoo_dir)
            weights_file = zoo_meta["weights_file"]
        else:
            weights_file = str(Path(model_cfg.weights_file).resolve())
        model = _create_from_file(name, arch, weights_file, kwargs)
    else:
        model = _create_from_hub(name, kwargs)
    data_config = timm.data.resolve_model_data_config(model)
    return Backbone(model, arch, tag, weights, weights_file, data_config, zoo_meta)


def _zoo_entry(model_cfg: Any, source_cfg: Any, zoo_dir: str | Path | None) -> dict[str, Any]:
    if zoo_dir is None:
        raise CaulkConfigError("model.weights=zoo needs paths.zoo_dir")
    check_source_cfg(model_cfg, source_cfg)
    entry = entry_for(model_cfg, source_cfg, zoo_dir)
    meta, _ = ensure_entry(entry, lambda: build_zoo_entry(model_cfg, source_cfg, entry))
    return {**meta, "weights_file": str(entry.weights_path.resolve())}


def _create_from_file(name: str, arch: str, weights_file: str, kwargs: dict[str, Any]) -> nn.Module:
    # pretrained_cfg_overlay(file=...) goes through timm's filter (drops a mismatched head).
    try:
        model = timm.create_model(
            name,
            pretrained=True,
            num_classes=0,
            pretrained_cfg_overlay=dict(file=weights_file),
            **kwargs,
        )
    except RuntimeError as e:  # torch's strict load_state_dict report, many lines
        raise CaulkConfigError(
            f"weights file {weights_file} does not fit {arch}: {_summarize_load_error(str(e))}"
        ) from None
    except Exception as e:  # not a weights file at all: text, truncated, another format
        first = (str(e).strip().splitlines() or [""])[0]
        raise CaulkConfigError(
            f"model.weights_file {weights_file} is not a readable weights file "
            f"({type(e).__name__}: {first})"
        ) from None
    _check_file_matches(model, weights_file, arch)
    return model


def _create_from_hub(name: str, kwargs: dict[str, Any]) -> nn.Module:
    """Hub weights: from the local HF cache when present, else downloaded; fails fast offline."""
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise _hub_error(name, "timm knows no hub weights for this architecture/tag")
    cached = _hub_cached_file(cfg.hf_hub_id)
    if cached:  # load through the local-file path: no network round trip, no retries
        return timm.create_model(
            name, pretrained=True, num_classes=0, pretrained_cfg_overlay=dict(file=cached), **kwargs
        )
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "", "false", "no"):
        raise _hub_error(name, "HF_HUB_OFFLINE is set and the weights are not in the local cache")
    unreachable = _hub_unreachable_reason()
    if unreachable:
        raise _hub_error(name, unreachable)
    try:
        return timm.create_model(name, pretrained=True, num_classes=0, **kwargs)
    except Exception as e:  # network errors come in many types (requests, hf_hub, OSError)
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise _hub_error(name, f"{type(e).__name__}: {first_line}") from e


def _hub_unreachable_reason(timeout: float = 3.0) -> str | None:
    """Why the HF hub cannot be reached (None if it can), found in a few seconds at most.

    huggingface_hub retries with exponential backoff (about a minute with no network), so a
    direct connection is tried first. Behind an HTTP(S) proxy the check is left to the download.
    """
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return f"no network: cannot reach {host}:{port} ({e.strerror or type(e).__name__})"


def _hub_cached_file(hf_hub_id: str | None) -> str | None:
    """Path of the weights in the local HF cache, if they were downloaded before."""
    if not hf_hub_id:
        return None
    repo = hf_hub_id.split("@")[0]
    for filename in ("model.safetensors", "pytorch_model.bin"):
        path = try_to_load_from_cache(repo, filename)
        if isinstance(path, str):
            return path
    return None


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (only those that train with ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def state_dict_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached copies of every parameter and buffer (for bit-identity checks)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
