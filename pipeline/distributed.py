"""DDP process handling: which process this is, the strategy Lightning runs, ending the processes.

Several processes (`devices`, `num_nodes`, `distributed: ddp` in the run config) are Lightning's DDP
strategy: its launcher re-executes the command once per extra local device (or torchrun/SLURM start
every process). Every process runs the same experiment; only global rank 0 evaluates and writes the
store (pipeline/experiment.py). What is ours is kept here: the rank before a process group exists,
the process group's timeout, and waiting for (or killing) the processes this one launched.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.strategies import DDPStrategy, Strategy

# Between two distributed runs the other ranks wait in the next run's first collective while rank 0 evaluates,
# attributes and stores the previous run, so the process group waits longer than torch's 30-minute default.
DDP_TIMEOUT = timedelta(hours=4)

_LAUNCHED: list = []  # processes Lightning's `ddp` launcher started from this one (subprocess.Popen)


def is_global_zero() -> bool:
    """Whether this process is (or will be) global rank 0: the one that writes the store.

    Inside a process group torch.distributed says. Before one exists, the launcher's environment does:
    RANK (torchrun), NODE_RANK/LOCAL_RANK (Lightning's `ddp` launcher, which starts the extra local ranks when
    rank 0 reaches its first fit), SLURM_PROCID. A process started by none of them is rank 0.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    env = os.environ
    if "RANK" in env:
        return int(env["RANK"]) == 0
    if "LOCAL_RANK" in env:
        return int(env["LOCAL_RANK"]) == 0 and int(env.get("NODE_RANK", env.get("GROUP_RANK", 0))) == 0
    return int(env.get("SLURM_PROCID", 0)) == 0


def local_rank() -> int:
    """This process's index on its machine (its GPU); 0 unless a launcher started it."""
    return int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", 0)))


def backend() -> str:
    """The process group's backend (nccl, gloo), or "?" outside one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return str(torch.distributed.get_backend())
    return "?"


def lightning_strategy(distributed: str) -> Strategy | str:
    """Lightning's strategy for the run's `distributed` setting: DDP with our longer timeout, else by name."""
    return DDPStrategy(timeout=DDP_TIMEOUT) if distributed == "ddp" else distributed


def keep_launched(trainer: pl.Trainer) -> None:
    """Remember the processes the trainer's launcher started from this one, for end_distributed()."""
    _LAUNCHED.extend(p for p in getattr(trainer.strategy.launcher, "procs", []) if p not in _LAUNCHED)


def end_distributed(failed: bool, wait_s: float = 120.0) -> None:
    """End of an experiment: leave the process group, and in a process that launched others, wait for them to finish
    their share (kill them at once after a failure here, so none is left waiting in a collective)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    deadline = time.monotonic() + wait_s
    while _LAUNCHED:
        proc = _LAUNCHED.pop()
        if failed:
            proc.kill()
        else:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except Exception:  # subprocess.TimeoutExpired: it should have ended with its last run
                proc.kill()
        proc.wait()


class ShardReport(Callback):
    """With several processes, each rank says how much data it trains on and the val_acc it sees (the same on
    every rank: the metrics are reduced across processes)."""

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.world_size > 1:
            assert trainer.train_dataloader is not None  # Lightning sets it up before on_train_start
            train_n = len(trainer.train_dataloader.sampler)
            val_n = sum(len(loader.sampler) for loader in _loaders(trainer.val_dataloaders))
            strategy = trainer.strategy  # DDP whenever there are several processes ("auto" or "ddp")
            backend = strategy.process_group_backend if isinstance(strategy, DDPStrategy) else type(strategy).__name__
            print(f"[ddp] rank {trainer.global_rank} of {trainer.world_size} ({backend})"
                  f": {train_n} train / {val_n} val images on this rank", flush=True)

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.world_size > 1:
            acc = trainer.callback_metrics.get("val_acc")
            print(f"[ddp] rank {trainer.global_rank} of {trainer.world_size}: last val_acc="
                  f"{float(acc) if acc is not None else float('nan'):.6f}", flush=True)


def _loaders(loaders) -> list:
    if loaders is None:
        return []
    return list(loaders) if isinstance(loaders, (list, tuple)) else [loaders]
