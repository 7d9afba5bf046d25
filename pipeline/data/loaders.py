"""Batches straight from the memory-mapped cache.

A batch is fetched with one fancy-index read of the memmap (indices sorted, so the disk is
read forwards), not image by image, and comes out already stacked: uint8 (B, H, W, 3) and
int64 targets (B, n_tasks). Normalisation happens later, on the device (BatchTransform).
The same loader serves precomputed features (float (n, d)).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate


class CachedImages(Dataset):
    """Rows `rows` of the cache `pixels` with their `targets` (n, n_tasks) int64.

    Any array works (e.g. precomputed float features); the dtype is kept.
    """

    def __init__(self, pixels: np.ndarray, rows: np.ndarray, targets: np.ndarray) -> None:
        targets = np.asarray(targets, dtype=np.int64)
        self.pixels = pixels
        self.rows = np.asarray(rows, dtype=np.int64)
        self.targets = targets.reshape(len(targets), -1)
        if len(self.rows) != len(self.targets):
            raise ValueError(f"{len(self.rows)} rows but {len(self.targets)} targets")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(np.array(self.pixels[self.rows[i]])), torch.from_numpy(self.targets[i].copy())

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole batch in one read; order as requested."""
        idx = np.asarray(indices, dtype=np.int64)
        rows = self.rows[idx]
        order = np.argsort(rows, kind="stable")
        batch = np.empty((len(idx), *self.pixels.shape[1:]), dtype=self.pixels.dtype)
        batch[order] = self.pixels[rows[order]]
        return torch.from_numpy(batch), torch.from_numpy(self.targets[idx])

    def __getstate__(self) -> dict:
        """Worker processes reopen the memmap by file name instead of copying the array."""
        state = dict(self.__dict__)
        if isinstance(self.pixels, np.memmap) and self.pixels.filename:
            state["pixels"] = (self.pixels.filename, self.pixels.offset, self.pixels.shape, self.pixels.dtype.str)
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state["pixels"], tuple):
            filename, offset, shape, dtype = state["pixels"]
            state["pixels"] = np.memmap(filename, dtype=np.dtype(dtype), mode="r", offset=offset, shape=shape)
        self.__dict__.update(state)


def collate_batch(batch: list | tuple) -> object:
    """Batches from __getitems__ are already stacked; anything else (a list of samples) gets the default collate."""
    if isinstance(batch, tuple) and len(batch) == 2 and all(isinstance(t, torch.Tensor) for t in batch):
        return batch
    return default_collate(list(batch))


def make_loader(pixels: np.ndarray, rows: np.ndarray, targets: np.ndarray, batch_size: int, shuffle: bool,
                seed: int, num_workers: int = 0) -> DataLoader:
    """A DataLoader over the cache whose batch order depends only on `seed` (and the epoch)."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(CachedImages(pixels, rows, targets), batch_size=batch_size, shuffle=shuffle,
                      generator=generator, num_workers=num_workers, collate_fn=collate_batch,
                      persistent_workers=num_workers > 0)
