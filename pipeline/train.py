"""One run's training: stages (head, then all layers…), early stopping, optional LR finder.

A frozen backbone with the deterministic transform gives the same features every epoch, so
such stages compute the features once and train only the heads on them: exact, not an
approximation, and one backbone pass instead of one per epoch.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, EarlyStopping

from pipeline.config import RunConfig
from pipeline.data.loaders import make_loader
from pipeline.data.prepare import PreparedData
from pipeline.data.transforms import BatchTransform
from pipeline.evaluate import forward_pass, pick_device
from pipeline.models.backbones import build_backbone
from pipeline.models.classifier import PeriodClassifier
from pipeline.models.freezing import apply_strategy, unfreeze_all
from pipeline.models.lightning import IGNORE, ClassifierModule

# Frozen blocks are kept in eval mode on purpose (BatchNorm statistics stay frozen too).
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
warnings.filterwarnings("ignore", message=r".*does not have many workers.*")


@dataclass
class Stage:
    name: str  # "head", "finetune", "partial" — how much of the backbone trains
    epochs: int
    lr: float


@dataclass
class TrainResult:
    model: PeriodClassifier  # best weights (by validation accuracy) loaded
    transform: BatchTransform
    labels: dict[str, list[str]]
    targets: np.ndarray  # (n_images, n_tasks) class indices, IGNORE where unknown
    epochs: pd.DataFrame
    best_epoch: int
    seconds: float
    device: str
    lr: float
    features: np.ndarray | None = None  # embeddings of every image when a frozen stage computed them
    notes: list[str] = field(default_factory=list)


def stages_for(run: RunConfig) -> list[Stage]:
    if run.strategy == "two_stage":
        return [Stage("head", run.epochs, run.lr), Stage("finetune", run.stage2_epochs, run.lr * run.stage2_lr_factor)]
    name = {"head": "head", "finetune": "finetune", "partial": "partial"}[run.strategy]
    return [Stage(name, run.epochs, run.lr)]


def label_targets(images: pd.DataFrame, labels: dict[str, list[str]]) -> np.ndarray:
    """Class index per image and task; IGNORE where an image has no (known) label for the task."""
    columns = []
    for task, names in labels.items():
        codes = pd.Categorical(images[task], categories=names).codes.astype(np.int64)
        columns.append(np.where(codes < 0, IGNORE, codes))
    return np.stack(columns, axis=1)


class EpochRecorder(Callback):
    """Per-epoch train/val loss and accuracy plus LR, for the store's `epochs` table."""

    def __init__(self, stage: str, offset: int) -> None:
        self.stage, self.offset, self.rows = stage, offset, []

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        m = {k: float(v) for k, v in trainer.callback_metrics.items()}
        self.rows.append(
            {
                "stage": self.stage,
                "epoch": self.offset + trainer.current_epoch + 1,
                "train_loss": m.get("train_loss"),
                "train_acc": m.get("train_acc"),
                "train_artist_acc": m.get("train_artist_acc"),
                "val_loss": m.get("val_loss"),
                "val_acc": m.get("val_acc"),
                "val_artist_acc": m.get("val_artist_acc"),
                "lr": trainer.optimizers[0].param_groups[0]["lr"],
            }
        )


class BestWeights(Callback):
    """Keeps a CPU copy of the model at its best validation accuracy (ties: the earlier epoch)."""

    def __init__(self) -> None:
        self.best, self.state, self.epoch, self.offset = -1.0, None, 0, 0

    def on_validation_end(self, trainer: pl.Trainer, module: ClassifierModule) -> None:
        if trainer.sanity_checking:
            return
        acc = float(trainer.callback_metrics.get("val_acc", -1))
        if acc > self.best:
            self.best, self.epoch = acc, self.offset + trainer.current_epoch + 1
            self.state = {k: v.detach().cpu().clone() for k, v in module.model.state_dict().items()}


def train(run: RunConfig, data: PreparedData, progress: bool = True) -> TrainResult:
    """Build the model for `run`, fit every stage, and return it with its best weights."""
    pl.seed_everything(run.seed, workers=True, verbose=False)
    labels = {"period": list(data.periods)}
    if "artist" in run.tasks:
        labels["artist"] = list(data.artists)
    targets = label_targets(data.images, labels)
    backbone = build_backbone(run.backbone, pretrained=run.pretrained)
    model = PeriodClassifier(backbone, {t: len(n) for t, n in labels.items()}, dropout=run.head_dropout)
    transform = BatchTransform(data.config.crop, mean=backbone.mean, std=backbone.std, hflip=run.hflip)
    device = pick_device(run.accelerator)
    split = data.images["split"].to_numpy()
    idx = {s: np.flatnonzero(split == s) for s in ("train", "val")}
    rows = data.images["cache_index"].to_numpy()

    started = time.perf_counter()
    features: np.ndarray | None = None
    history: list[dict] = []
    best = BestWeights()
    lr = run.lr
    notes: list[str] = []
    stages = stages_for(run)
    for i, stage in enumerate(stages):
        if stage.name == "head":
            apply_strategy(backbone, "head")
        elif stage.name == "partial":
            apply_strategy(backbone, "partial", run.freeze_until)
        else:
            unfreeze_all(backbone)
        from_features = stage.name == "head" and run.feature_cache and not run.hflip
        if from_features and features is None:
            features, _ = forward_pass(
                model, transform, data.pixels, rows, run.batch_size * 2, device, heads=False,
                desc="features (frozen backbone)", progress=progress,
            )
        source, source_rows = (features, np.arange(len(rows))) if from_features else (data.pixels, rows)
        loaders = [
            make_loader(source, source_rows[idx[s]], targets[idx[s]], run.batch_size, shuffle=s == "train",
                        seed=run.seed, num_workers=run.num_workers)
            for s in ("train", "val")
        ]
        module = ClassifierModule(
            model, run.tasks, lr=stage.lr, momentum=run.momentum, weight_decay=run.weight_decay,
            plateau_patience=run.plateau_patience, plateau_factor=run.plateau_factor,
            transform=transform, from_features=from_features, channels_last=device.type == "cuda",
        )
        if run.lr_finder and i == 0:
            lr = module.lr = find_lr(run, device, from_features, module, loaders, notes)
        recorder = EpochRecorder(stage.name, offset=len(history))
        best.offset = len(history)
        callbacks = [EarlyStopping("val_acc", mode="max", patience=run.patience), best, recorder]
        make_trainer(run, device, from_features, stage.epochs, callbacks, progress).fit(module, *loaders)
        history += recorder.rows
        if best.state is not None:
            model.load_state_dict(best.state)
    seconds = time.perf_counter() - started
    if features is not None and any(s.name != "head" for s in stages):
        features = None  # the backbone changed after the features were taken
    return TrainResult(
        model=model, transform=transform, labels=labels, targets=targets,
        epochs=pd.DataFrame(history), best_epoch=best.epoch, seconds=seconds, device=str(device), lr=lr,
        features=features, notes=notes,
    )


def make_trainer(
    run: RunConfig, device: torch.device, from_features: bool, epochs: int, callbacks: list, progress: bool,
    root_dir: str | None = None,
) -> pl.Trainer:
    return pl.Trainer(
        default_root_dir=root_dir,
        max_epochs=epochs,
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=run.devices if device.type == "cuda" else 1,
        precision="bf16-mixed" if device.type == "cuda" and not from_features else "32-true",
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        max_time={"minutes": run.max_minutes} if run.max_minutes else None,
    )


def find_lr(
    run: RunConfig, device: torch.device, from_features: bool, module: ClassifierModule, loaders: list,
    notes: list[str],
) -> float:
    """Lightning's LR range test; keeps the configured LR when it finds no suggestion."""
    from pytorch_lightning.tuner import Tuner

    steps = max(40, min(100, len(loaders[0]) * 2))
    with tempfile.TemporaryDirectory() as scratch:  # lr_find checkpoints the model to restore it afterwards
        trainer = make_trainer(run, device, from_features, steps // max(1, len(loaders[0])) + 1, [], False, scratch)
        finder = Tuner(trainer).lr_find(
            module, train_dataloaders=loaders[0], val_dataloaders=loaders[1],
            min_lr=1e-6, max_lr=1.0, num_training=steps, early_stop_threshold=None, update_attr=False,
        )
    suggestion = finder.suggestion() if finder is not None else None
    if suggestion:
        notes.append(f"LR finder suggested {suggestion:.2e}")
        return float(suggestion)
    notes.append("LR finder gave no suggestion; kept the configured LR")
    return module.lr
