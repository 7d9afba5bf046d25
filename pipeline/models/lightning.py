"""The LightningModule: one or two heads, summed cross-entropy; the reference's SGD + ReduceLROnPlateau, or
AdamW/SGD with linear warm-up and cosine decay, label smoothing and mixup (recipes in configs/).

It trains either from uint8 image batches (normalised and cropped on the device by a
BatchTransform) or, for a frozen backbone, from precomputed features (`from_features=True`),
where only the heads run.

Under DDP (several processes, each on its shard of the data) the epoch metrics are reduced
across processes (`sync_dist`), so every rank sees the same val_acc for early stopping, the
LR schedule and the best-epoch choice.
"""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import RunConfig
from pipeline.data.labels import IGNORE
from pipeline.models.classifier import PeriodClassifier
from pipeline.models.freezing import keep_frozen_in_eval, parameter_groups


class ClassifierModule(pl.LightningModule):
    """`run` supplies the recipe (optimiser, schedule, smoothing, mixup, layer decay); `lr` is the stage's LR."""

    def __init__(
        self,
        model: PeriodClassifier,
        run: RunConfig,
        lr: float,
        transform: nn.Module | None = None,
        from_features: bool = False,
        channels_last: bool = False,
        class_weights: dict[str, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.run = run
        self.tasks = list(run.model.tasks)
        self.lr = lr  # attribute name the Lightning LR finder sets
        self.transform = transform
        self.from_features = from_features
        self.channels_last = channels_last
        self.class_weights = class_weights or {}

    def inputs(self, x: torch.Tensor, train: bool = False) -> torch.Tensor:
        """What the trainable part sees: features as they are, images cropped and normalised on the device."""
        if self.from_features:
            return x
        assert self.transform is not None, "image batches need the BatchTransform (train.py always gives one)"
        x = self.transform(x, train=train)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def forward(self, x: torch.Tensor, train: bool = False) -> dict[str, torch.Tensor]:
        return self.trainable(self.inputs(x, train))

    def trainable(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model.heads_forward(x) if self.from_features else self.model(x)

    def mixed(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor, float]:
        """Mixup (Zhang et al. 2018): a batch blended with itself shuffled, weight lam ~ Beta(a, a);
        returns the logits, the permutation and lam (the loss mixes the two targets alike)."""
        lam = float(torch.distributions.Beta(self.run.augment.mixup, self.run.augment.mixup).sample())
        x = self.inputs(x, train=True)
        perm = torch.randperm(len(x), device=x.device)
        x = lam * x + (1 - lam) * x[perm]
        return self.trainable(x), perm, lam

    def on_train_epoch_start(self) -> None:
        # Lightning keeps whatever mode modules were left in (a feature pass leaves eval):
        # train everything trainable, keep frozen blocks (BatchNorm statistics included) in eval.
        self.model.train()
        keep_frozen_in_eval(self.model)

    @property
    def distributed(self) -> bool:
        return self._trainer is not None and self.trainer.world_size > 1

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        training = stage == "train"
        if training and self.run.augment.mixup > 0:
            logits, perm, lam = self.mixed(x)
        else:
            logits, perm, lam = self(x, train=training), None, 1.0
        smoothing = self.run.optim.label_smoothing if training else 0.0
        loss = torch.zeros((), device=x.device)
        sync = self.distributed
        for i, task in enumerate(self.tasks):
            target = y[:, i]
            if (target != IGNORE).any():
                weight = self.class_weights.get(task)
                weight = weight.to(x.device) if weight is not None else None
                loss = loss + lam * F.cross_entropy(logits[task], target, weight=weight, ignore_index=IGNORE,
                                                    label_smoothing=smoothing)
                if perm is not None:
                    loss = loss + (1 - lam) * F.cross_entropy(logits[task], target[perm], weight=weight,
                                                              ignore_index=IGNORE, label_smoothing=smoothing)
            elif sync:
                # A head with no known target in this batch still joins the graph (with a zero loss): DDP
                # expects a gradient for every trainable parameter on every rank at every step.
                loss = loss + logits[task].sum() * 0.0
            known = target != IGNORE
            hits = logits[task].argmax(1)[known] == target[known]
            acc = hits.float().mean() if known.any() else loss.new_tensor(0.0)
            name = f"{stage}_acc" if task == "period" else f"{stage}_{task}_acc"
            self.log(name, acc, on_step=False, on_epoch=True, prog_bar=task == "period", batch_size=len(x),
                     sync_dist=sync)
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, prog_bar=stage == "val", batch_size=len(x),
                 sync_dist=sync)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def configure_optimizers(self):
        params = parameter_groups(self.model, self.model.backbone.blocks, self.lr, self.run.freezing.layer_decay)
        optimizer: torch.optim.Optimizer
        if self.run.optim.optimizer == "adamw":
            optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.run.optim.weight_decay)
        else:
            optimizer = torch.optim.SGD(params, lr=self.lr, momentum=self.run.optim.momentum,
                                        weight_decay=self.run.optim.weight_decay)
        if self.run.optim.schedule == "cosine":
            total = max(1, int(self.trainer.estimated_stepping_batches))
            per_epoch = total / max(1, self.trainer.max_epochs or 1)  # make_trainer always sets max_epochs
            warmup = torch.optim.lr_scheduler.LambdaLR(
                optimizer, warmup_cosine(total, round(self.run.optim.warmup_epochs * per_epoch)))
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": warmup, "interval": "step"}}
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=self.run.optim.plateau_factor, patience=self.run.optim.plateau_patience
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": plateau, "monitor": "val_acc"}}


def warmup_cosine(total_steps: int, warmup_steps: int):
    """LR factor per step: linear warm-up from ~0, then cosine decay to 0 at the last step (Goyal et al. 2017;
    Loshchilov & Hutter 2017)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor
