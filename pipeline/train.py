"""One run's training: stages (head, then all layers…), early stopping, optional LR finder.

A frozen backbone with the deterministic transform gives the same features every epoch, so
such stages compute the features once and train only the heads on them: exact, not an
approximation, and one backbone pass instead of one per epoch.

Several processes (`devices`, `num_nodes`, `distributed: ddp` in the run config) are Lightning's
DDP strategy (ranks, timeout and launched processes: pipeline/distributed.py): each process trains
on its shard of the data (Lightning puts a DistributedSampler into our loaders), epoch metrics
are reduced across processes, and after training only global rank 0 evaluates and writes
(pipeline/experiment.py). A frozen-backbone stage computes the features in every process
(the same deterministic pass, on that process's device) and trains the heads on per-rank
shards of them. The LR finder is single-process only (refused with several processes).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, EarlyStopping
from torch.utils.data import DataLoader

from pipeline.config import ConfigError, RunConfig
from pipeline.data.labels import IGNORE, label_targets
from pipeline.data.loaders import make_loader
from pipeline.data.prepare import PreparedData
from pipeline.data.transforms import BatchTransform
from pipeline.distributed import ShardReport, backend, is_global_zero, keep_launched, lightning_strategy, local_rank
from pipeline.inference import forward_pass, pick_device
from pipeline.models.backbones import Backbone, build_backbone
from pipeline.models.classifier import PeriodClassifier
from pipeline.models.freezing import apply_strategy, unfreeze_all
from pipeline.models.lightning import ClassifierModule


@contextlib.contextmanager
def lightning_quiet() -> Iterator[None]:
    """Silence two Lightning warnings about what we do on purpose, inside our own fits only.

    Frozen blocks are kept in eval mode (BatchNorm statistics stay frozen too), and loaders over the
    in-memory cache need no workers. The filters are restored after, so callers keep their own.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        yield


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
    view_features: dict[str, np.ndarray] = field(default_factory=dict)  # ... of their test-time views too
    notes: list[str] = field(default_factory=list)
    world_size: int = 1  # training processes (DDP); only global rank 0 evaluates and stores
    global_rank: int = 0


def stages_for(run: RunConfig) -> list[Stage]:
    if run.freezing.strategy == "two_stage":
        return [Stage("head", run.loop.epochs, run.optim.lr),
                Stage("finetune", run.freezing.stage2_epochs, run.optim.lr * run.freezing.stage2_lr_factor)]
    name = {"head": "head", "finetune": "finetune", "partial": "partial"}[run.freezing.strategy]
    return [Stage(name, run.loop.epochs, run.optim.lr)]


class EpochRecorder(Callback):
    """Per-epoch train/val loss and accuracy plus LR, for the store's `epochs` table."""

    def __init__(self, stage: str, offset: int) -> None:
        self.stage, self.offset = stage, offset
        self.rows: list[dict] = []

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
    """Keeps a CPU copy of the model at its best validation accuracy (ties: the earlier epoch).

    Under DDP val_acc is reduced across processes and the weights are the same in every process, so every rank
    keeps the same epoch; rank 0's copy is the one stored."""

    def __init__(self) -> None:
        self.best, self.epoch, self.offset = -1.0, 0, 0
        self.state: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        assert isinstance(module, ClassifierModule), "BestWeights goes on fits of a ClassifierModule only"
        acc = float(trainer.callback_metrics.get("val_acc", -1))
        if acc > self.best:
            self.best, self.epoch = acc, self.offset + trainer.current_epoch + 1
            self.state = {k: v.detach().cpu().clone() for k, v in module.model.state_dict().items()}


def train(run: RunConfig, data: PreparedData, progress: bool = True) -> TrainResult:
    """Build the model for `run`, fit every stage, and return it with its best weights."""
    pl.seed_everything(run.loop.seed, workers=True, verbose=False)
    labels = {"period": list(data.periods)}
    if "artist" in run.model.tasks:
        labels["artist"] = list(data.artists)
    targets = label_targets(data.images, labels)
    backbone = build_backbone(run.model.backbone, pretrained=run.model.pretrained)
    model = PeriodClassifier(backbone, {t: len(n) for t, n in labels.items()}, dropout=run.model.head_dropout,
                             pooling=run.model.pooling)
    transform = BatchTransform(data.config.crop, mean=backbone.mean, std=backbone.std, hflip=run.augment.hflip,
                               crop_scale=run.augment.crop_scale)
    device = pick_device(run.hardware.accelerator)
    if device.type == "cuda" and torch.cuda.device_count() > 1:
        device = torch.device("cuda", local_rank())  # this process's GPU (for the feature pass); 0 unless launched
    split = data.images["split"].to_numpy()
    idx = {s: np.flatnonzero(split == s) for s in ("train", "val")}
    rows = data.images["cache_index"].to_numpy()

    started = time.perf_counter()
    features: np.ndarray | None = None
    mirrored: np.ndarray | None = None  # features of the mirrored images: flip augmentation on the feature cache
    history: list[dict] = []
    best = BestWeights()
    lr = run.optim.lr
    notes: list[str] = []
    stages = stages_for(run)
    threads = torch.get_num_threads()  # Lightning lowers it for several processes; restored for evaluation
    world_size, rank = 1, 0
    for i, stage in enumerate(stages):
        set_trainable(backbone, stage, run.freezing.freeze_until)
        from_features = stage.name == "head" and run.loop.feature_cache and not run.augment.crop_scale
        if from_features:
            if features is None:  # the first stage that trains from features takes them
                features = frozen_features(run, model, transform, data, rows, device, progress, notes)
                if run.augment.hflip:
                    mirrored = frozen_features(run, model, transform, data, rows, device, progress, notes,
                                               "centre-flip")
            source, source_rows = features, np.arange(len(rows))
        else:
            source, source_rows = data.pixels, rows
        loaders = stage_loaders(run, source, source_rows, targets, idx, mirrored if from_features else None)
        module = ClassifierModule(
            model, run, lr=stage.lr, transform=transform, from_features=from_features,
            channels_last=device.type == "cuda",
            class_weights=class_weights(targets[idx["train"]], labels) if run.optim.class_balanced else None,
        )
        if run.optim.lr_finder and i == 0:
            lr = module.lr = find_lr(run, device, from_features, module, loaders, notes)
        recorder = EpochRecorder(stage.name, offset=len(history))
        best.offset = len(history)
        callbacks = [EarlyStopping("val_acc", mode="max", patience=run.loop.patience), best, recorder, ShardReport()]
        trainer = make_trainer(run, device, from_features, stage.epochs, callbacks, progress)
        with lightning_quiet():
            trainer.fit(module, loaders[0], loaders[1])  # train, val
        world_size, rank = trainer.world_size, trainer.global_rank
        keep_launched(trainer)
        history += recorder.rows
        if best.state is not None:
            model.load_state_dict(best.state)
    seconds = time.perf_counter() - started
    torch.set_num_threads(threads)
    if world_size > 1:
        notes.append(f"trained on {world_size} processes (DDP, {backend()}), each on its shard of the data")
    if features is not None and any(s.name != "head" for s in stages):
        features = mirrored = None  # the backbone changed after the features were taken
    view_features = {"centre": features, "centre-flip": mirrored} if features is not None else {}
    return TrainResult(
        model=model, transform=transform, labels=labels, targets=targets,
        epochs=pd.DataFrame(history), best_epoch=best.epoch, seconds=seconds,
        device=str(pick_device(run.hardware.accelerator)),
        lr=lr, features=features, view_features={k: v for k, v in view_features.items() if v is not None},
        notes=notes, world_size=world_size, global_rank=rank,
    )


def set_trainable(backbone: Backbone, stage: Stage, freeze_until: int | None) -> None:
    """The stage's frozen blocks: all of them (head), the first `freeze_until` (partial) or none."""
    if stage.name == "head":
        apply_strategy(backbone, "head")
    elif stage.name == "partial":
        apply_strategy(backbone, "partial", freeze_until)
    else:
        unfreeze_all(backbone)


def stage_loaders(run: RunConfig, source: np.ndarray, source_rows: np.ndarray, targets: np.ndarray,
                  idx: dict[str, np.ndarray], mirrored: np.ndarray | None = None) -> list[DataLoader]:
    """Train and val loaders over `source` (cached pixels, or frozen features); with the features of the
    mirrored images, every training image is seen in both orientations each epoch (flip on the feature cache)."""
    train_source, train_rows, train_targets = source, source_rows[idx["train"]], targets[idx["train"]]
    if mirrored is not None:
        train_source = np.concatenate([source, mirrored])
        train_rows = np.concatenate([train_rows, len(source) + train_rows])
        train_targets = np.concatenate([train_targets, train_targets])
    return [make_loader(array, rows_, y, run.loop.batch_size, shuffle=shuffle, seed=run.loop.seed,
                        num_workers=run.hardware.num_workers)
            for array, rows_, y, shuffle in ((train_source, train_rows, train_targets, True),
                                             (source, source_rows[idx["val"]], targets[idx["val"]], False))]


def class_weights(targets: np.ndarray, labels: dict[str, list[str]]) -> dict[str, torch.Tensor]:
    """Per task, n / (k x count) for each class of the training targets (Cui et al. 2019 call it inverse
    frequency): every class weighs the same in the loss; a class absent from training gets weight 0."""
    out = {}
    for i, (task, names) in enumerate(labels.items()):
        known = targets[:, i][targets[:, i] != IGNORE]
        counts = np.bincount(known, minlength=len(names)).astype(np.float64)
        weights = np.divide(len(known), len(names) * counts, out=np.zeros_like(counts), where=counts > 0)
        out[task] = torch.tensor(weights, dtype=torch.float32)
    return out


def feature_file(run: RunConfig, transform: BatchTransform, data: PreparedData, rows: np.ndarray, view: str
                 ) -> Path | None:
    """Where the frozen backbone's features of these images are kept between runs (None: not cacheable).

    Only pretrained weights give the same features in every run; the key is everything they depend on: the
    decoded cache file (path and modification time), which rows, the backbone, pooling, crop, view and
    normalisation."""
    filename = getattr(data.pixels, "filename", None)
    if not run.model.pretrained or filename is None:
        return None
    pixels = Path(filename)
    spec = [str(pixels), pixels.stat().st_mtime_ns, hashlib.sha1(rows.tobytes()).hexdigest(), run.model.backbone,
            run.model.pooling, view, transform.crop, transform.mean.flatten().tolist(),
            transform.std.flatten().tolist(), torch.__version__]
    digest = hashlib.sha1(json.dumps(spec).encode()).hexdigest()[:16]
    return pixels.parent / "features" / f"{run.model.backbone}-{digest}.npy"


def frozen_features(run: RunConfig, model: PeriodClassifier, transform: BatchTransform, data: PreparedData,
                    rows: np.ndarray, device: torch.device, progress: bool, notes: list[str], view: str = "centre"
                    ) -> np.ndarray:
    """The frozen backbone's embedding of every image (in one test-time view): one pass, kept on disk for the
    next run with this backbone (another head, LR or seed trains on them at once)."""
    path = feature_file(run, transform, data, rows, view)
    if path is not None and path.exists():
        notes.append(f"frozen-backbone features ({view}) reused from {path.name}")
        return np.load(path)
    # At the run's own batch, as its uncached epochs pass the backbone: twice that doubled the freshly
    # page-faulted activation memory per image on a CPU and ran at half their rate (BENCHMARKS.md, feature cache).
    features, _ = forward_pass(model, transform, data.pixels, rows, run.loop.batch_size, device, heads=False,
                               desc=f"features (frozen backbone, {view})", progress=progress, view=view)
    if path is not None and is_global_zero():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}.npy")
        np.save(tmp, features)
        os.replace(tmp, path)  # whole or absent: a killed run leaves no half file under the real name
    return features


def make_trainer(
    run: RunConfig, device: torch.device, from_features: bool, epochs: int, callbacks: list, progress: bool,
    root_dir: str | None = None,
) -> pl.Trainer:
    """Lightning does the distribution: devices and num_nodes from the run, strategy from `run.hardware.distributed`."""
    gpu, hw = device.type == "cuda", run.hardware
    return pl.Trainer(
        default_root_dir=root_dir,
        max_epochs=epochs,
        accelerator="gpu" if gpu else "cpu",
        devices=hw.devices if gpu or isinstance(hw.devices, int) else 1,  # CPU: an int is a process count
        num_nodes=hw.num_nodes,
        strategy=lightning_strategy(hw.distributed),
        precision="bf16-mixed" if device.type == "cuda" and not from_features else "32-true",
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        max_time=timedelta(minutes=run.loop.max_minutes) if run.loop.max_minutes else None,
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
        if trainer.world_size > 1:
            raise ConfigError(f"run {run.name!r}: lr_finder runs in a single process only; this run would use "
                              f"{trainer.world_size} (devices x num_nodes); set lr: and drop lr_finder")
        with lightning_quiet():
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
