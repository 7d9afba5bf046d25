"""The LightningModule: one or two heads, summed cross-entropy, SGD + ReduceLROnPlateau.

It trains either from uint8 image batches (normalised and cropped on the device by a
BatchTransform) or, for a frozen backbone, from precomputed features (`from_features=True`),
where only the heads run.

Under DDP (several processes, each on its shard of the data) the epoch metrics are reduced
across processes (`sync_dist`), so every rank sees the same val_acc for early stopping, the
LR schedule and the best-epoch choice.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.classifier import PeriodClassifier
from pipeline.models.freezing import keep_frozen_in_eval, trainable_parameters

IGNORE = -100  # target of an image without a label for that task (e.g. unknown artist)


class ClassifierModule(pl.LightningModule):
    def __init__(
        self,
        model: PeriodClassifier,
        tasks: list[str],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        plateau_patience: int = 1,
        plateau_factor: float = 0.1,
        transform: nn.Module | None = None,
        from_features: bool = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.tasks = list(tasks)
        self.lr = lr  # attribute name the Lightning LR finder sets
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.plateau_patience = plateau_patience
        self.plateau_factor = plateau_factor
        self.transform = transform
        self.from_features = from_features
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor, train: bool = False) -> dict[str, torch.Tensor]:
        if self.from_features:
            return self.model.heads_forward(x)
        x = self.transform(x, train=train)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

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
        logits = self(x, train=stage == "train")
        loss = torch.zeros((), device=x.device)
        sync = self.distributed
        for i, task in enumerate(self.tasks):
            target = y[:, i]
            if (target != IGNORE).any():
                loss = loss + F.cross_entropy(logits[task], target, ignore_index=IGNORE)
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
        optimizer = torch.optim.SGD(
            trainable_parameters(self.model), lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=self.plateau_factor, patience=self.plateau_patience
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val_acc"}}
