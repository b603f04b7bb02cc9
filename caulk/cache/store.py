"""On-disk, content-addressed store of cached prefix outputs, shared by the jobs of a sweep.

An entry is ``<dir>/<key>.safetensors`` where ``key`` hashes everything the tensors depend on:
the prefix's weights, the input transform, the dataset's identity (config, sizes, labels and,
for in-memory datasets, the data itself) and the prefix depth. Writers write a temporary file
and rename it into place (atomic on POSIX), so concurrent writers of one key each leave a whole,
identical file and readers never see a partial one. Each entry carries the SHA-256 of its tensors
and its key in its metadata; a truncated, corrupt or mismatching entry is reported, recomputed
and replaced, never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors import SafetensorError
from safetensors.torch import safe_open, save_file

from caulk.atomic import write_atomic
from caulk.cache.extract import CachedFeatures, extract_features
from caulk.cache.prefix import PrefixPlan, prefix_state

log = logging.getLogger("caulk.features")  # the name users filter the cache messages by
FORMAT = "caulk-prefix-cache-1"
#: data settings that choose training subsets or loading, not the pool/test content
_DATA_KEYS_IGNORED = {
    "n",
    "shots",
    "batch_size",
    "num_workers",
    "pin_memory",
    "persistent_workers",
    "prefetch_factor",
    "val_size",
    "val_policy",
    "stratify",
    "protocol",
    "vtab1k_stage",
    "augment",
}


def _hash_tensors(h, tensors: dict[str, torch.Tensor]) -> None:
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def cache_key(model, plan: PrefixPlan, datamodule, data_config: dict[str, Any]) -> str:
    """The content address of one prefix output: weights + transform + data + prefix depth."""
    h = hashlib.sha256(FORMAT.encode())
    h.update(plan.tag.encode())
    _hash_tensors(h, prefix_state(model, plan))
    h.update(json.dumps(data_config, sort_keys=True, default=str).encode())
    h.update(type(datamodule.transform).__qualname__.encode())
    cfg = datamodule.cfg
    cfg = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    ident = {k: v for k, v in cfg.items() if k not in _DATA_KEYS_IGNORED}
    h.update(json.dumps(ident, sort_keys=True, default=str).encode())
    s = datamodule.splits
    h.update(s.pool_labels.tobytes())
    h.update(s.test_labels.tobytes())
    if datamodule.in_memory:
        _hash_tensors(h, {"pool_x": s.pool_x, "test_x": s.test_x})
    return h.hexdigest()[:40]


def _payload_digest(pool: torch.Tensor, test: torch.Tensor) -> str:
    h = hashlib.sha256()
    _hash_tensors(h, {"pool": pool, "test": test})
    return h.hexdigest()


def read_entry(path: Path, key: str) -> CachedFeatures | None:
    """The entry at ``path`` if it is whole and belongs to ``key``; None (with a warning) if not."""
    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            pool, test = f.get_tensor("pool"), f.get_tensor("test")
        ok = meta.get("key") == key and meta.get("sha256") == _payload_digest(pool, test)
    except (SafetensorError, OSError, ValueError, RuntimeError, KeyError) as e:
        log.warning("feature cache: unreadable entry %s (%s); recomputing", path, e)
        return None
    if not ok:
        log.warning("feature cache: entry %s fails its checksum; recomputing", path)
        return None
    depth = meta.get("depth", "all")
    plan = PrefixPlan(None if depth == "all" else int(depth))
    return CachedFeatures(pool, test, plan, source="disk")


def write_entry(path: Path, key: str, features: CachedFeatures) -> None:
    """Write ``features`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pool, test = features.pool.contiguous(), features.test.contiguous()
    depth = "all" if features.plan.depth is None else str(features.plan.depth)
    meta = {"key": key, "sha256": _payload_digest(pool, test), "depth": depth, "format": FORMAT}
    tensors = {"pool": pool, "test": test}
    write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta), fsync=True)


def load_or_extract(
    model,
    plan: PrefixPlan,
    datamodule,
    data_config: dict[str, Any],
    cache_dir: str | Path | None,
    device: str | torch.device | None = None,
) -> CachedFeatures:
    """The prefix outputs from the disk store when a whole entry exists, else computed on
    ``device`` (and stored when ``cache_dir`` is set). ``cache_dir=None``: compute, store nothing."""
    if cache_dir is None:
        return extract_features(model, datamodule, plan=plan, device=device)
    key = cache_key(model, plan, datamodule, data_config)
    path = Path(cache_dir) / f"{key}.safetensors"
    found = read_entry(path, key)
    if found is not None:
        return found
    features = extract_features(model, datamodule, plan=plan, device=device)
    try:
        write_entry(path, key, features)
    except OSError as e:  # a read-only or full cache dir must not fail the run
        log.warning("feature cache: could not write %s (%s)", path, e)
    return features
