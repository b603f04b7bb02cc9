"""Source tasks for pre-training the zoo: procedurally generated glyphs, or the user's ImageFolder.

The glyph task has ``num_classes`` classes; each class is a fixed random shape of 1-3 strokes
(quadratic Bezier curves), drawn from ``task_seed``. Example ``i`` of a split is rendered on the
fly from its own random stream (random affine, stroke jitter and width, blur/low resolution,
noise), so every example is reproducible by itself, whatever the loader order, and a split
small enough (``RENDER_CACHE_BYTES``) keeps what it rendered: pre-training renders each example
once, not once per epoch, with the same results. Labels cycle through the classes (balanced).
The source never sees the downstream data: it is generated from seeds alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

SPLIT_STREAMS = {"train": 0, "val": 1}
RENDER_SIZE = 32
#: a split up to this size keeps its rendered examples (exact: an example depends only on its
#: index), so pre-training renders each one once rather than once per epoch: m <= 131,072
RENDER_CACHE_BYTES = 1 << 29


@dataclass(frozen=True)
class GlyphTask:
    """The class templates of a glyph source task (fixed by ``task_seed``)."""

    num_classes: int = 256
    max_strokes: int = 3
    task_seed: int = 0
    points_per_stroke: int = 24

    @cached_property
    def templates(self) -> list[np.ndarray]:
        """Per class: control points of shape (strokes, 3, 2) in [-0.8, 0.8]^2."""
        rng = np.random.default_rng([self.task_seed, 7919])
        out = []
        for _ in range(self.num_classes):
            strokes = int(rng.integers(1, self.max_strokes + 1))
            out.append(rng.uniform(-0.8, 0.8, size=(strokes, 3, 2)))
        return out


def _bezier(ctrl: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Points on quadratic Bezier curves: ctrl (S, 3, 2), t (T,) -> (S*T, 2)."""
    t = t[None, :, None]
    p0, p1, p2 = ctrl[:, None, 0], ctrl[:, None, 1], ctrl[:, None, 2]
    pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
    return pts.reshape(-1, 2)


_GRID = np.stack(
    np.meshgrid(
        (np.arange(RENDER_SIZE) + 0.5) / RENDER_SIZE * 2 - 1,
        (np.arange(RENDER_SIZE) + 0.5) / RENDER_SIZE * 2 - 1,
        indexing="xy",
    ),
    axis=-1,
).reshape(-1, 2)


def _draws(task: GlyphTask, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """The random numbers of one example: 9 uniforms, control-point jitter, pixel noise."""
    return (
        rng.random(9),
        rng.standard_normal((task.max_strokes, 3, 2)),
        rng.standard_normal((RENDER_SIZE, RENDER_SIZE), dtype=np.float32),
    )


def render_glyphs(task: GlyphTask, labels: Sequence[int], draws: list[tuple]) -> torch.Tensor:
    """Render a batch from labels and per-example draws: (B, 1, 32, 32) float32 in [0, 1].

    Random affine (rotation, anisotropic scale, shear, shift), jittered control points, stroke
    width, a random resolution (8 to 32 px, back up bilinearly), contrast and pixel noise.
    """
    u = np.stack([d[0] for d in draws])  # (B, 9) in [0, 1)
    span = lambda k, lo, hi: lo + (hi - lo) * u[:, k]  # noqa: E731
    angle, shear = span(0, -0.35, 0.35), span(1, -0.25, 0.25)
    sx, sy = span(2, 0.9, 1.25), span(3, 0.9, 1.25)
    cos, sin = np.cos(angle), np.sin(angle)
    # rot @ shear @ diag(sx, sy), batched
    affine = np.stack(
        [
            np.stack([cos * sx, (cos * shear - sin) * sy], -1),
            np.stack([sin * sx, (sin * shear + cos) * sy], -1),
        ],
        -2,
    )
    t = np.linspace(0.0, 1.0, task.points_per_stroke)
    pts = []
    for label, (_, jitter, _) in zip(labels, draws, strict=True):
        template = task.templates[label]
        curve = _bezier(template + 0.06 * jitter[: len(template)], t)
        pad = task.max_strokes * task.points_per_stroke - len(curve)
        pts.append(np.concatenate([curve, np.repeat(curve[-1:], pad, axis=0)]))
    shift = np.stack([span(4, -0.1, 0.1), span(5, -0.1, 0.1)], -1)
    pts = np.einsum("bij,bpj->bpi", affine, np.stack(pts)) + shift[:, None]
    pts_t = torch.from_numpy(pts.astype(np.float32))
    grid = torch.from_numpy(_GRID.astype(np.float32)).expand(len(draws), -1, -1)
    d2 = torch.cdist(grid, pts_t).amin(-1) ** 2
    width = torch.from_numpy(span(6, 0.09, 0.18).astype(np.float32))[:, None]
    imgs = torch.exp(-d2 / (2 * width**2)).view(-1, 1, RENDER_SIZE, RENDER_SIZE)
    lows = np.array([8, 12, 16, RENDER_SIZE])[np.minimum((u[:, 7] * 4).astype(int), 3)]
    for low in set(lows.tolist()) - {RENDER_SIZE}:
        sel = torch.from_numpy(np.flatnonzero(lows == low))
        x = F.adaptive_avg_pool2d(imgs[sel], low)
        imgs[sel] = F.interpolate(x, size=RENDER_SIZE, mode="bilinear", align_corners=False)
    contrast = torch.from_numpy(span(8, 0.7, 1.0).astype(np.float32)).view(-1, 1, 1, 1)
    noise_sd = torch.from_numpy((0.08 * u[:, 8]).astype(np.float32)).view(-1, 1, 1, 1)
    noise = torch.from_numpy(np.stack([d[2] for d in draws]))[:, None]
    return (imgs * contrast + noise_sd * noise).clamp_(0.0, 1.0)


class GlyphDataset(Dataset):
    """``size`` examples of ``task``: (image (1, 32, 32) in [0, 1], label, index).

    The train and val splits use disjoint random streams, so a val example is never a training
    example for any m. A DataLoader fetches whole batches through ``__getitems__`` (rendered
    together).
    """

    def __init__(
        self,
        task: GlyphTask,
        size: int,
        split: str = "train",
        sample_seed: int = 0,
        cache: bool = True,
    ):
        if split not in SPLIT_STREAMS:
            raise ValueError(f"split must be one of {list(SPLIT_STREAMS)}, got {split!r}")
        self.task, self.size, self.split, self.sample_seed = task, int(size), split, sample_seed
        self.cache = cache and self.size * RENDER_SIZE**2 * 4 <= RENDER_CACHE_BYTES
        self._rendered: tuple[torch.Tensor, np.ndarray] | None = None  # images, done mask

    def __len__(self) -> int:
        return self.size

    def label(self, i: int) -> int:
        return i % self.task.num_classes

    def _draws(self, i: int) -> tuple[np.ndarray, ...]:
        stream = [self.task.task_seed, self.sample_seed, SPLIT_STREAMS[self.split], int(i)]
        return _draws(self.task, np.random.default_rng(stream))

    def _render(self, indices: list[int]) -> torch.Tensor:
        labels = [self.label(i) for i in indices]
        return render_glyphs(self.task, labels, [self._draws(i) for i in indices])

    def images(self, indices: list[int]) -> torch.Tensor:
        """The examples' images (B, 1, 32, 32), rendered on first use (kept when ``cache``)."""
        for i in indices:
            if not 0 <= i < self.size:
                raise IndexError(i)
        if not self.cache:
            return self._render(indices)
        if self._rendered is None:  # allocated lazily: in each DataLoader worker of its own
            size = (self.size, 1, RENDER_SIZE, RENDER_SIZE)
            self._rendered = torch.empty(size), np.zeros(self.size, dtype=bool)
        store, done = self._rendered
        todo = sorted({i for i in indices if not done[i]})
        if todo:
            store[todo] = self._render(todo)
            done[todo] = True
        return store[indices]

    def __getitems__(self, indices: list[int]) -> list[tuple]:
        indices = [int(i) for i in indices]
        imgs = self.images(indices)
        return [
            (img, torch.tensor(self.label(i)), torch.tensor(i))
            for img, i in zip(imgs, indices, strict=True)
        ]

    def __getitem__(self, i: int):
        return self.__getitems__([i])[0]
