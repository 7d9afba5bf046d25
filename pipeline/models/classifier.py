"""A backbone with one linear head per task (period, optionally artist)."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.models.backbones import Backbone
from pipeline.models.pooling import StyleStatistics, style_dim

POOLINGS = ("avg", "style")


def _head(dim: int, n: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, n))


class PeriodClassifier(nn.Module):
    """Backbone features -> dropout + linear head per task; logits returned as a dict keyed by task.

    Only `backbone.body` is registered (not the ImageNet fc), so checkpoints and the optimiser see
    exactly what this model uses. Task order is preserved: the first task ('period') is the main one.
    """

    def __init__(self, backbone: Backbone, num_classes: dict[str, int], dropout: float = 0.0, pooling: str = "avg"):
        super().__init__()
        if not num_classes:
            raise ValueError("num_classes needs at least one task, e.g. {'period': 5}")
        bad = {task: n for task, n in num_classes.items() if int(n) < 1}
        if bad:
            raise ValueError(f"every task needs at least one class, got {bad}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.backbone = backbone
        self.pooling = pooling
        if pooling == "style":  # + mean/std of earlier blocks (pipeline/models/pooling.py)
            dim = style_dim(backbone.body, backbone.blocks)
            self.body: nn.Module = StyleStatistics(backbone.body, backbone.blocks)
        else:
            dim, self.body = backbone.dim, backbone.body
        self.dim = dim
        self.tasks = list(num_classes)
        self.heads = nn.ModuleDict({task: _head(dim, int(n), dropout) for task, n in num_classes.items()})

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features (B, dim) of normalised images."""
        return self.body(x)

    def heads_forward(self, emb: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per task from features; used directly when features are cached."""
        return {task: head(emb) for task, head in self.heads.items()}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.heads_forward(self.embed(x))
