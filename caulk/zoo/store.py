"""caulk's model zoo: backbones pre-trained on a source task of size m, cached on disk.

An entry is ``<zoo_dir>/<arch>-m<m>-s<seed>-<recipe hash>.safetensors`` (the backbone without
its source head) plus ``.json`` metadata (architecture, kwargs, m, seed, source accuracy,
training config, sha256 of the weights). The metadata is written last and marks the entry
complete; the weights are checked against its sha256 before every load, so a corrupt or
truncated file is reported, never loaded. Entries are built under a file lock, so concurrent
jobs of a sweep build each entry once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from caulk.errors import CaulkConfigError

log = logging.getLogger("caulk.zoo")
# Source-config keys that do not change the trained weights (left out of the recipe hash).
NOT_IN_RECIPE = ("num_workers", "progress_bar")


@dataclass(frozen=True)
class ZooEntry:
    """Where one zoo backbone lives and what it was built from."""

    zoo_dir: Path
    name: str

    @property
    def weights_path(self) -> Path:
        return self.zoo_dir / f"{self.name}.safetensors"

    @property
    def meta_path(self) -> Path:
        return self.zoo_dir / f"{self.name}.json"

    @property
    def lock_path(self) -> Path:
        return self.zoo_dir / f"{self.name}.lock"

    def exists(self) -> bool:
        return self.meta_path.is_file()


def _plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def recipe(model_cfg: Any, source_cfg: Any) -> dict[str, Any]:
    """Everything that determines an entry's weights, as plain data."""
    source = {k: v for k, v in (_plain(source_cfg) or {}).items() if k not in NOT_IN_RECIPE}
    return {
        "arch": model_cfg.arch,
        "kwargs": _plain(model_cfg.get("kwargs")) or {},
        "source_m": int(model_cfg.source_m),
        "source_seed": int(model_cfg.get("source_seed", 0)),
        "source": source,
    }


def entry_for(model_cfg: Any, source_cfg: Any, zoo_dir: str | Path) -> ZooEntry:
    """The zoo entry of ``model_cfg`` (arch, kwargs, source_m, source_seed) under ``source_cfg``."""
    r = recipe(model_cfg, source_cfg)
    digest = hashlib.sha256(json.dumps(r, sort_keys=True).encode()).hexdigest()[:10]
    name = f"{r['arch']}-m{r['source_m']}-s{r['source_seed']}-{digest}"
    return ZooEntry(Path(zoo_dir).expanduser(), name)


def file_sha256(path: Path) -> str:
    """SHA-256 hex digest of the file at ``path`` (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_metadata(entry: ZooEntry) -> dict[str, Any]:
    """The entry's metadata; CaulkConfigError if it is unreadable."""
    try:
        meta = json.loads(entry.meta_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CaulkConfigError(
            f"zoo entry {entry.meta_path} is unreadable ({type(e).__name__}); delete "
            f"{entry.zoo_dir / entry.name}.* to rebuild it"
        ) from None
    if not isinstance(meta, dict):
        raise CaulkConfigError(
            f"zoo entry {entry.meta_path} is not a metadata object (a JSON "
            f"{type(meta).__name__}); delete {entry.zoo_dir / entry.name}.* to rebuild it"
        )
    return meta


def verify(entry: ZooEntry) -> dict[str, Any]:
    """Check the weights against the metadata's sha256; return the metadata, else raise."""
    meta = read_metadata(entry)
    if not entry.weights_path.is_file():
        raise CaulkConfigError(
            f"zoo entry {entry.name} has metadata but no weights file {entry.weights_path}; "
            f"delete {entry.meta_path} to rebuild it"
        )
    actual = file_sha256(entry.weights_path)
    if actual != meta.get("sha256"):
        raise CaulkConfigError(
            f"zoo weights {entry.weights_path} are corrupt (sha256 {actual[:12]} != "
            f"{str(meta.get('sha256'))[:12]} in the metadata); delete "
            f"{entry.zoo_dir / entry.name}.* to rebuild it"
        )
    return meta


@contextmanager
def build_lock(entry: ZooEntry) -> Iterator[None]:
    """An exclusive lock on building ``entry`` (other processes wait for it)."""
    entry.zoo_dir.mkdir(parents=True, exist_ok=True)
    with open(entry.lock_path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_entry(
    entry: ZooEntry, build: Callable[[], dict[str, Any]]
) -> tuple[dict[str, Any], bool]:
    """Metadata of a verified ``entry``, building it first with ``build()`` if it is missing.

    Returns ``(metadata, built)``. Only one process builds a given entry; the others wait and
    then load it.
    """
    if entry.exists():
        return verify(entry), False
    with build_lock(entry):
        if entry.exists():  # built by another process while this one waited
            return verify(entry), False
        build()  # announces itself (caulk.progress): a warning would be wrong when it was asked for
        return verify(entry), True
