"""Freezing strategies: the right parameters train, and frozen blocks really stay frozen after a step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.models.backbones import build_backbone
from pipeline.models.classifier import PeriodClassifier
from pipeline.models.freezing import apply_strategy, keep_frozen_in_eval, trainable_parameters, unfreeze_all

NAMES = ["resnet18", "efficientnet_lite0"]
BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


def grads(module: nn.Module) -> list[bool]:
    return [p.requires_grad for p in module.parameters()]


def frozen_ids(backbone) -> set[int]:
    return {id(p) for p in backbone.body.parameters() if not p.requires_grad}


def block_ids(blocks) -> set[int]:
    return {id(p) for block in blocks for p in block.parameters()}


def bn_stats(module: nn.Module) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{stat}": getattr(m, stat).clone()
        for name, m in module.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        for stat in BN_STATS
    }


@pytest.fixture(params=NAMES)
def backbone(request):
    torch.manual_seed(0)
    return build_backbone(request.param, pretrained=False)


def test_head_freezes_the_whole_backbone(backbone):
    apply_strategy(backbone, "head")
    assert not any(grads(backbone.body))
    model = PeriodClassifier(backbone, {"period": 5})
    assert {id(p) for p in trainable_parameters(model)} == {id(p) for p in model.heads.parameters()}


def test_finetune_trains_everything(backbone):
    apply_strategy(backbone, "head")
    apply_strategy(backbone, "finetune")  # strategies reset what an earlier one froze
    assert all(grads(backbone.body))


def test_two_stage_starts_frozen_then_unfreezes(backbone):
    apply_strategy(backbone, "two_stage")
    assert not any(grads(backbone.body))
    unfreeze_all(backbone)
    assert all(grads(backbone.body))


def test_partial_freezes_exactly_the_first_k_blocks(backbone):
    n = len(backbone.blocks)
    for k in range(1, n + 1):
        apply_strategy(backbone, "partial", freeze_until=k)
        assert frozen_ids(backbone) == block_ids(backbone.blocks[:k])
        assert all(grads(nn.ModuleList(backbone.blocks[k:])))
    assert not any(grads(backbone.body))  # k = len(blocks) freezes the entire backbone


@pytest.mark.parametrize("bad", [None, 0, -1, 99])
def test_partial_validates_freeze_until(backbone, bad):
    with pytest.raises(ValueError, match=f"between 1 and {len(backbone.blocks)}"):
        apply_strategy(backbone, "partial", freeze_until=bad)


def test_other_strategy_errors(backbone):
    with pytest.raises(ValueError, match="unknown"):
        apply_strategy(backbone, "linear_probe")
    with pytest.raises(ValueError, match="only applies to strategy 'partial'"):
        apply_strategy(backbone, "head", freeze_until=2)


@pytest.mark.slow
@pytest.mark.parametrize(("strategy", "freeze_until"), [("head", None), ("partial", 2), ("finetune", None)])
def test_sgd_step_leaves_frozen_blocks_untouched(backbone, strategy, freeze_until):
    apply_strategy(backbone, strategy, freeze_until)
    model = PeriodClassifier(backbone, {"period": 4, "artist": 3}, dropout=0.5)
    model.train()
    keep_frozen_in_eval(model)

    frozen = [m for m in model.modules() if list(m.parameters()) and not any(grads(m))]
    assert all(not m.training for m in frozen)
    assert all(isinstance(h[0], nn.Dropout) and h[0].p == 0.5 and h[0].training for h in model.heads.values())
    k = {"head": len(backbone.blocks), "partial": freeze_until, "finetune": 0}[strategy]
    frozen_blocks, trainable_blocks = nn.ModuleList(backbone.blocks[:k]), nn.ModuleList(backbone.blocks[k:])

    params_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    frozen_bn_before, trainable_bn_before = bn_stats(frozen_blocks), bn_stats(trainable_blocks)

    x = torch.randn(4, 3, 64, 64)
    logits = model(x)
    assert list(logits) == ["period", "artist"]
    assert logits["period"].shape == (4, 4) and logits["artist"].shape == (4, 3)
    loss = nn.functional.cross_entropy(logits["period"], torch.tensor([0, 1, 2, 3]))
    loss = loss + nn.functional.cross_entropy(logits["artist"], torch.tensor([0, 1, 2, 0]))
    optimizer = torch.optim.SGD(trainable_parameters(model), lr=0.5)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

    after = dict(model.named_parameters())
    for name, p in after.items():
        if p.requires_grad:
            assert not torch.equal(p, params_before[name]), f"{name} is trainable but did not change"
        else:
            assert torch.equal(p, params_before[name]), f"{name} is frozen but changed"
    frozen_bn_after = bn_stats(frozen_blocks)
    assert all(torch.equal(v, frozen_bn_after[key]) for key, v in frozen_bn_before.items())
    trainable_bn_after = bn_stats(trainable_blocks)
    moved = [not torch.equal(v, trainable_bn_after[key]) for key, v in trainable_bn_before.items() if "running" in key]
    assert all(moved)  # keep_frozen_in_eval must not freeze the statistics of trainable blocks

    if strategy == "head":  # a frozen backbone in train mode still gives the same features each pass
        with torch.no_grad():
            assert torch.equal(model.embed(x), model.embed(x))


@pytest.mark.slow
def test_classifier_heads_and_embedding(backbone):
    model = PeriodClassifier(backbone, {"period": 6, "artist": 12}, dropout=0.5).eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        emb = model.embed(x)
        assert emb.shape == (3, backbone.dim)
        out = model.heads_forward(emb)
        assert {t: v.shape for t, v in out.items()} == {"period": (3, 6), "artist": (3, 12)}
        assert torch.equal(out["period"], model(x)["period"])
    assert not any(k.startswith("backbone") or "imagenet" in k for k in model.state_dict())
    with pytest.raises(ValueError):
        PeriodClassifier(backbone, {})
