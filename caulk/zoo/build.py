"""Building a zoo entry: pre-train a timm backbone on a source task of size m (glyphs or a user's
ImageFolder), deterministically from ``model.source_seed``, and store it in the zoo."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset, RandomSampler
from torchvision.datasets import ImageFolder
from torchvision.transforms.functional import pil_to_tensor

from caulk import __version__
from caulk.atomic import write_atomic
from caulk.config import check_section
from caulk.data.base import ToBackboneInput
from caulk.errors import CaulkConfigError
from caulk.progress import Progress
from caulk.run.record import write_json_atomic
from caulk.torch_env import skip_nvml_check_without_driver
from caulk.zoo import models  # noqa: F401  (registers caulk's timm architectures)
from caulk.zoo.sources import GlyphDataset, GlyphTask
from caulk.zoo.store import ZooEntry, file_sha256, recipe

log = logging.getLogger("caulk.pretrain")
SOURCES = ("glyphs", "imagefolder")
#: the recipe keys every source task needs, and those only glyphs has
SOURCE_KEYS = (
    "val_size",
    "steps",
    "batch_size",
    "lr",
    "weight_decay",
    "warmup_steps",
    "label_smoothing",
)
GLYPH_KEYS = ("num_classes", "max_strokes")


def check_source_cfg(model_cfg: Any, source_cfg: Any) -> None:
    """One-line errors for a bad source config, before anything is built.

    Types and ranges of ``model`` and ``source_task`` are the schema's (``caulk.config``); here:
    the source size is set, the source task is known and an ImageFolder source's root exists.
    """
    check_section("model", model_cfg)
    m = model_cfg.get("source_m")
    if m is None:
        raise CaulkConfigError(
            f"model.source_m must be an integer >= 0 (the source size), got {m!r}"
        )
    if source_cfg is None or source_cfg.get("name") not in SOURCES:
        name = None if source_cfg is None else source_cfg.get("name")
        raise CaulkConfigError(
            f"unknown source_task {name!r}; expected one of {', '.join(SOURCES)}"
        )
    recipe_keys = SOURCE_KEYS + (GLYPH_KEYS if source_cfg.name == "glyphs" else ())
    check_section("source_task", source_cfg, required=recipe_keys)
    if source_cfg.name == "imagefolder":
        root = source_cfg.get("root")
        if not root or not Path(root).is_dir():
            raise CaulkConfigError(
                f"source_task=imagefolder needs source_task.root=DIR (not found: {root})"
            )


def _source_datasets(source_cfg: Any, m: int, seed: int):
    """(train dataset of size m, val dataset, number of classes) of the source task."""
    if source_cfg.name == "glyphs":
        task = GlyphTask(
            num_classes=int(source_cfg.num_classes),
            max_strokes=int(source_cfg.max_strokes),
            task_seed=int(source_cfg.task_seed),
        )
        return (
            GlyphDataset(task, m, "train", sample_seed=seed),
            GlyphDataset(task, int(source_cfg.val_size), "val", sample_seed=seed),
            task.num_classes,
        )
    return _imagefolder_datasets(source_cfg, m, seed)


class _FolderPositions(Dataset):
    """(image, label, position) for some positions of an ImageFolder."""

    def __init__(self, folder: ImageFolder, positions: list[int]):
        self.folder, self.positions = folder, positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int):
        x, y = self.folder[self.positions[i]]
        return x, torch.tensor(y), torch.tensor(i)


def _folder_image(img) -> torch.Tensor:
    return pil_to_tensor(img.convert("RGB").resize((64, 64))).float() / 255.0


def _imagefolder_datasets(source_cfg: Any, m: int, seed: int):
    folder = ImageFolder(str(source_cfg.root), transform=_folder_image)
    val_size = int(source_cfg.val_size)
    if m + val_size > len(folder):
        raise CaulkConfigError(
            f"source_task.root has {len(folder)} images: fewer than source_m={m} + source_task.val_size={val_size}"
        )
    order = np.random.default_rng(seed).permutation(len(folder))
    train = _FolderPositions(folder, order[:m].tolist())
    return train, _FolderPositions(folder, order[-val_size:].tolist()), len(folder.classes)


class SourceClassifier(pl.LightningModule):
    """A timm classifier trained on the source task (AdamW, warmup + cosine)."""

    def __init__(self, model, source_cfg: Any):
        super().__init__()
        self.model = model
        self.source_cfg = source_cfg
        self.val_correct = 0
        self.val_total = 0

    def training_step(self, batch, batch_idx):
        x, y, _ = batch
        logits = self.model(x)
        smoothing = float(self.source_cfg.label_smoothing)
        loss = F.cross_entropy(logits, y, label_smoothing=smoothing)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y, _ = batch
        pred = self.model(x).argmax(-1)
        self.val_correct += int((pred == y).sum())
        self.val_total += len(y)

    def configure_optimizers(self):
        cfg = self.source_cfg
        steps, warmup = int(cfg.steps), int(cfg.get("warmup_steps", 0))
        opt = torch.optim.AdamW(
            self.model.parameters(), lr=float(cfg.lr), weight_decay=float(cfg.weight_decay)
        )

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class PretrainProgress(pl.Callback):
    """caulk's progress over the pre-training steps: a bar on a TTY, else a line every tenth step."""

    def __init__(self, entry: ZooEntry, steps: int):
        self.progress = Progress("pre-training step", steps, entry.name, every=max(1, steps // 10))

    def on_train_batch_start(self, *args: Any) -> None:
        """The next step begins."""
        self.progress.begin()

    def on_train_batch_end(self, *args: Any) -> None:
        """The step is done."""
        self.progress.end()

    def on_train_end(self, *args: Any) -> None:
        """Finish the bar."""
        self.progress.close()


def _initial_model(arch: str, kwargs: dict[str, Any], num_classes: int, seed: int) -> Any:
    """The random init of ``weights=none`` with ``init_seed=seed``, with a source-task head."""
    with torch.random.fork_rng(devices=[]):
        # the start is the random init of weights=none with init_seed=source_seed (m=0 is it)
        torch.manual_seed(seed)
        model = timm.create_model(arch, pretrained=False, num_classes=0, **kwargs)
        model.reset_classifier(num_classes)
    return model


def _pretrain(
    module: SourceClassifier,
    train_ds: Dataset,
    collate: Any,
    source_cfg: Any,
    seed: int,
    trainer_kwargs: dict[str, Any],
    callbacks: list[pl.Callback],
) -> None:
    """Train ``module`` for ``source_cfg.steps`` steps on ``train_ds`` (seeded, RNG state kept)."""
    workers = int(source_cfg.get("num_workers", 0))
    sampler = RandomSampler(
        train_ds,
        replacement=False,
        num_samples=None,
        generator=torch.Generator().manual_seed(seed),
    )
    train_loader = DataLoader(
        train_ds,
        batch_size=int(source_cfg.batch_size),
        sampler=sampler,
        collate_fn=collate,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    with torch.random.fork_rng(devices=[]):
        pl.seed_everything(seed, verbose=False)
        trainer = pl.Trainer(
            max_steps=int(source_cfg.steps),
            limit_val_batches=0,
            callbacks=callbacks,
            **trainer_kwargs,
        )
        trainer.fit(module, train_loader)


def _write_weights(entry: ZooEntry, state: dict[str, torch.Tensor]) -> None:
    """Write the entry's weights file atomically (temporary file, then rename)."""
    # no safetensors metadata: its key order is not stable
    write_atomic(entry.weights_path, lambda tmp: save_file(state, str(tmp)))


def build_zoo_entry(
    model_cfg: Any, source_cfg: Any, entry: ZooEntry, progress_bar: bool = True
) -> dict[str, Any]:
    """Pre-train ``model_cfg.arch`` on ``source_m`` source examples; write the entry atomically.
    ``progress_bar``: show caulk's progress over the steps (``caulk.progress``)."""
    skip_nvml_check_without_driver()
    start = time.perf_counter()
    m, seed = int(model_cfg.source_m), int(model_cfg.get("source_seed", 0))
    arch, kwargs = model_cfg.arch, dict(model_cfg.get("kwargs") or {})
    train_ds, val_ds, num_classes = _source_datasets(source_cfg, max(m, 1), seed)
    model = _initial_model(arch, kwargs, num_classes, seed)
    collate = ToBackboneInput(timm.data.resolve_model_data_config(model)).collate
    workers = int(source_cfg.get("num_workers", 0))
    val_loader = DataLoader(
        val_ds, batch_size=256, collate_fn=collate, num_workers=workers, shuffle=False
    )
    module = SourceClassifier(model, source_cfg)
    trainer_kwargs = dict(
        accelerator="auto",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,  # Lightning's bar would land in log files: caulk's instead
        deterministic=True,
        num_sanity_val_steps=0,
    )
    if m > 0:
        progress = [PretrainProgress(entry, int(source_cfg.steps))] if progress_bar else []
        _pretrain(module, train_ds, collate, source_cfg, seed, trainer_kwargs, progress)
    evaluator = pl.Trainer(**trainer_kwargs)
    evaluator.validate(module, val_loader, verbose=False)
    source_accuracy = module.val_correct / max(1, module.val_total)
    model.reset_classifier(0)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    _write_weights(entry, state)
    meta = {
        **recipe(model_cfg, source_cfg),
        "name": entry.name,
        "num_params": int(sum(v.numel() for v in state.values())),
        "source_classes": num_classes,
        "source_accuracy": round(source_accuracy, 4),
        "source_val_size": int(module.val_total),
        "train_examples_seen": int(m and int(source_cfg.steps) * int(source_cfg.batch_size)),
        "sha256": file_sha256(entry.weights_path),
        "weights_file": str(entry.weights_path.resolve()),
        "wall_time_s": round(time.perf_counter() - start, 2),
        "caulk_version": __version__,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),  # CPU results are bit-identical per thread count
    }
    write_json_atomic(entry.meta_path, meta)
    log.info(
        "zoo entry %s: source accuracy %.3f (m=%d) in %.1f s",
        entry.name,
        source_accuracy,
        m,
        meta["wall_time_s"],
    )
    return meta
