"""Helpers for the data tests: real image files on disk (no tests here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, seed: int, size: tuple[int, int] = (12, 10), mode: str = "RGB") -> Path:
    """A small random image saved in the format its suffix names."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(path)
    return path


def make_image_folder(folder: Path, counts: dict[str, int], suffix: str = ".png") -> list[Path]:
    """``folder/<class>/<i><suffix>`` with ``counts[class]`` images per class."""
    paths = []
    for c, (name, count) in enumerate(sorted(counts.items())):
        for i in range(count):
            paths.append(write_image(folder / name / f"{i:04d}{suffix}", seed=1000 * c + i))
    return paths


def png_bytes(seed: int, size: tuple[int, int] = (12, 10)) -> bytes:
    """The bytes of a small random PNG."""
    import io

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def files_under(root: Path) -> list[Path]:
    """Every path under ``root`` (empty when root does not exist)."""
    return sorted(root.rglob("*")) if root.exists() else []
