"""The LightningModule: frozen timm backbone (kept in eval mode) + PEFT parts + a new head."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, SumMetric
from torchmetrics.classification import MulticlassAccuracy

from caulk.cache.prefix import PrefixPlan, run_suffix
from caulk.peft.base import PeftMethod


class FeatureStandardize(nn.BatchNorm1d):
    """BatchNorm1d without affine that also takes a batch of one (uses its running statistics).

    With exact n, the last batch of an epoch may hold a single example (n % batch_size == 1).
    """

    def __init__(self, num_features: int):
        super().__init__(num_features, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(
                x, self.running_mean, self.running_var, training=False, eps=self.eps
            )
        return super().forward(x)


class TransferModule(pl.LightningModule):
    """Downstream classifier on a frozen backbone.

    The backbone stays in eval mode whatever Lightning or the user calls (BatchNorm statistics
    and dropout of the frozen network never change); only the PEFT parts and the head switch to
    train mode. The optimizer sees trainable parameters only, and checkpoints hold only those
    tensors plus the plain-dict config (loadable with ``torch.load(weights_only=True)``).
    """

    def __init__(
        self,
        backbone: nn.Module,
        method: PeftMethod,
        num_classes: int,
        optimizer: partial | None = None,
        scheduler: str = "cosine",
        head_norm: bool = True,
        hparams: dict[str, Any] | None = None,
        inputs_are_features: bool = False,
        cached_prefix: PrefixPlan | None = None,
    ):
        super().__init__()
        # inputs are the cached output of the frozen prefix (caulk.cache), not images
        self.cached_prefix = cached_prefix or (PrefixPlan(None) if inputs_are_features else None)
        self.inputs_are_features = self.cached_prefix is not None
        self.save_hyperparameters(hparams or {}, logger=False)
        self.backbone = backbone
        self.method = method
        nf = int(backbone.num_features)
        # MAE-style probe head: standardising the frozen features (BatchNorm without affine)
        # makes the head's learning rate insensitive to the backbone's feature scale.
        self.head = nn.Sequential(
            FeatureStandardize(nf) if head_norm else nn.Identity(),
            nn.Linear(nf, num_classes),
        )
        self.optimizer_factory = optimizer
        self.scheduler = scheduler
        self.strict_loading = False  # checkpoints carry trainable tensors only
        self._train_mode_modules = method.train_mode_modules(backbone)
        for split in ("train", "val", "test"):
            setattr(self, f"{split}_acc", MulticlassAccuracy(num_classes, average="micro"))
            setattr(self, f"{split}_loss", MeanMetric())
        self.test_count = SumMetric()
        self.test_rows: list[torch.Tensor] = []  # per test batch: which rows it got right
        self.test_labels: list[torch.Tensor] = []
        self.train_seen: set[int] = set()
        self.train_drawn = 0
        self.n_train_seen = 0  # distinct examples in the fullest epoch
        self.train_samples_per_epoch = 0  # examples drawn (with repeats) in that epoch
        # Lightning >= 2.2 no longer calls train() at fit start: set the modes now (a fresh timm
        # model is in train mode, which would update the frozen BatchNorm statistics)
        self.train()

    def train(self, mode: bool = True) -> TransferModule:
        super().train(mode)
        self.backbone.eval()
        for m in self._train_mode_modules:
            m.training = mode  # one by one: the method lists exactly the modules that train
        return self

    def on_train_start(self) -> None:
        self.train()  # whatever the caller did to the modes before fit

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.cached_prefix is not None:  # cached prefix outputs: run the rest of the backbone
            return run_suffix(self.backbone, self.cached_prefix, x)
        if self.method.backbone_is_frozen:
            with torch.no_grad():  # not inference_mode: the output feeds a trainable head
                return self.backbone(x)
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def shared_step(self, batch, split: str) -> torch.Tensor:
        x, y, idx = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        acc = getattr(self, f"{split}_acc")
        acc.update(logits.detach(), y)
        getattr(self, f"{split}_loss").update(loss.detach(), weight=len(y))
        if split == "train":
            self.train_seen.update(idx.tolist())
            self.train_drawn += len(idx)
            loader = self.trainer.train_dataloader if self._trainer is not None else None
            if hasattr(loader, "batches_done"):  # caulk.data.sharding.ResumableLoader
                loader.batches_done += 1
        if split == "test":
            self.test_count.update(torch.tensor(float(len(y)), device=self.device))
            self.test_rows.append((logits.argmax(1) == y).cpu())
            self.test_labels.append(y.cpu())
        return loss

    def take_test_outcomes(self):
        """(correct, labels) of the test rows seen since the last call, in order (None, None
        when none were, or under DDP, where a rank sees only its shard); then forgets them."""
        rows, labels = self.test_rows, self.test_labels
        self.test_rows, self.test_labels = [], []
        if not rows or _world_size() > 1:
            return None, None
        return torch.cat(rows).numpy(), torch.cat(labels).numpy()

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self.shared_step(batch, "train")
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch[1]))
        return loss

    def on_train_epoch_start(self) -> None:
        self.train_seen = set()
        self.train_drawn = 0

    def on_train_epoch_end(self) -> None:
        # the step budget can end training mid-epoch: keep the fullest epoch's counts
        seen, drawn = _gather_union(self.train_seen), _gather_sum(self.train_drawn)
        if len(seen) > self.n_train_seen:
            self.n_train_seen = len(seen)  # distinct examples over all ranks
            self.train_samples_per_epoch = drawn
        self._log_epoch("train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self.shared_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def test_step(self, batch, batch_idx: int) -> None:
        self.shared_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")
        self.log("test/n_test", self.test_count.compute())
        self.test_count.reset()

    def _log_epoch(self, split: str) -> None:
        acc = getattr(self, f"{split}_acc")
        loss = getattr(self, f"{split}_loss")
        if acc.update_count == 0 and _world_size() == 1:  # under DDP every rank joins the sync
            return
        err = 1.0 - acc.compute()
        self.log_dict(
            {f"{split}/error": err, f"{split}/loss": loss.compute()}, prog_bar=split != "train"
        )
        acc.reset()
        loss.reset()

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.trainable_parameters())
        if self.scheduler == "none":
            return optimizer
        total = self.trainer.estimated_stepping_batches
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, int(total)))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """What training changes: trainable parameters, the buffers of modules in train mode
        (BatchNorm statistics of tuned blocks) and the head's buffers."""
        state = {n: p for n, p in self.named_parameters() if p.requires_grad}
        trained = {id(m) for m in self._train_mode_modules}
        for name, m in self.backbone.named_modules():
            if id(m) in trained:
                prefix = f"backbone.{name}." if name else "backbone."
                state.update({prefix + n: b for n, b in m.named_buffers(recurse=False)})
        state.update({f"head.{n}": b for n, b in self.head.named_buffers()})
        return state

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        keep = set(self.trainable_state_dict())
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        # what a resumed run needs to end with the same record (this rank's epoch so far)
        checkpoint["caulk_counts"] = {
            "train_seen": sorted(self.train_seen),
            "train_drawn": self.train_drawn,
            "n_train_seen": self.n_train_seen,
            "train_samples_per_epoch": self.train_samples_per_epoch,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        counts = checkpoint.get("caulk_counts")
        if counts:
            self.train_seen = set(counts["train_seen"])
            self.train_drawn = int(counts["train_drawn"])
            self.n_train_seen = int(counts["n_train_seen"])
            self.train_samples_per_epoch = int(counts["train_samples_per_epoch"])


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _gather_union(items: set[int]) -> set[int]:
    """The union of a per-rank set over all ranks (the set itself without a process group)."""
    if _world_size() == 1:
        return items
    parts: list[Any] = [None] * _world_size()
    dist.all_gather_object(parts, sorted(items))
    return set().union(*parts)


def _gather_sum(value: int) -> int:
    if _world_size() == 1:
        return value
    parts: list[Any] = [None] * _world_size()
    dist.all_gather_object(parts, int(value))
    return sum(parts)
