"""Which backbone layers train: the strategies `head`, `finetune`, `two_stage` and `partial`.

`requires_grad=False` alone does not freeze a network: BatchNorm layers in train mode still
update their running statistics (and dropout / stochastic depth still fire). `keep_frozen_in_eval`
closes that gap and must be called after every `module.train()` (Lightning calls `train()` at the
start of each training epoch).
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from pipeline.config import STRATEGIES
from pipeline.models.backbones import Backbone


def _set_trainable(params: Iterable[nn.Parameter], trainable: bool) -> None:
    for p in params:
        p.requires_grad_(trainable)


def apply_strategy(backbone: Backbone, strategy: str, freeze_until: int | None = None) -> None:
    """Set requires_grad on the backbone for a strategy.

    head: backbone frozen. finetune: all trainable. two_stage: frozen now (stage 1); the trainer
    calls `unfreeze_all` for stage 2. partial: `blocks[:freeze_until]` frozen, the rest trainable.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy {strategy!r} unknown; choose from {STRATEGIES}")
    n = len(backbone.blocks)
    if strategy == "partial":
        if freeze_until is None or isinstance(freeze_until, bool) or not 1 <= freeze_until <= n:
            raise ValueError(
                f"strategy 'partial' needs freeze_until between 1 and {n} (the number of blocks of "
                f"{backbone.name}), got {freeze_until!r}"
            )
    elif freeze_until is not None:
        raise ValueError(f"freeze_until only applies to strategy 'partial', not {strategy!r}")

    unfreeze_all(backbone)
    if strategy in ("head", "two_stage"):
        _set_trainable(backbone.body.parameters(), False)
    elif strategy == "partial":
        for block in backbone.blocks[:freeze_until]:
            _set_trainable(block.parameters(), False)


def unfreeze_all(backbone: Backbone) -> None:
    """Every backbone parameter trainable (finetune, and stage 2 of two_stage)."""
    _set_trainable(backbone.body.parameters(), True)


def keep_frozen_in_eval(module: nn.Module) -> None:
    """After `module.train()`: put every submodule whose parameters are all frozen into eval mode.

    That stops BatchNorm running statistics, dropout and stochastic depth inside frozen blocks, so a
    frozen block computes exactly what it computed before training. Parameter-free modules follow
    their frozen parent; outside one (e.g. the head's dropout) they keep their mode.
    """
    for sub in module.modules():
        params = list(sub.parameters())
        if params and not any(p.requires_grad for p in params):
            sub.eval()


def trainable_parameters(module: nn.Module) -> list[nn.Parameter]:
    """Parameters the optimiser should see."""
    return [p for p in module.parameters() if p.requires_grad]


def parameter_groups(model: nn.Module, blocks: list[nn.Module], lr: float, layer_decay: float = 1.0) -> list[dict]:
    """Discriminative learning rates (Howard & Ruder 2018): the heads at `lr`, the last block at lr x decay, the one
    before at lr x decay², ... down to the stem, so general early features move least. Frozen parameters are left
    out; layer_decay 1 is one group at `lr`."""
    if layer_decay == 1.0:
        return [{"params": trainable_parameters(model), "lr": lr}]
    groups: list[dict] = []
    seen: set[int] = set()  # ids of parameters already in a deeper block's group
    for depth, block in enumerate(reversed(blocks), start=1):
        params = [p for p in block.parameters() if p.requires_grad and id(p) not in seen]
        seen.update(id(p) for p in params)
        if params:
            groups.append({"params": params, "lr": lr * layer_decay**depth})
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in seen]
    return [{"params": rest, "lr": lr}, *groups]
