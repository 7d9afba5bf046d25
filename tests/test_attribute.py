"""Saliency maps: every method on every backbone family, Guided Backprop really guided,
Grad-CAM finds a planted signal, maps survive the PNG encoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import GuidedBackprop, Saliency

from pipeline.attribute import (
    Attributor,
    GuidedActivation,
    PeriodLogits,
    flush_denormal,
    flushes_denormals,
    guided_copy,
)
from pipeline.config import AttributionConfig
from pipeline.heatmaps import decode_map, encode_map, spearman, top_overlap
from pipeline.models.backbones import build_backbone
from pipeline.models.classifier import PeriodClassifier

FAMILIES = ["resnet18", "efficientnet_lite0"]


def plain_gradient(model: PeriodClassifier, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Vanilla input gradient (for comparison with Guided Backprop)."""
    return Saliency(PeriodLogits(model).eval()).attribute(x, target=target, abs=False)


def model_for(name: str, classes: int = 5) -> PeriodClassifier:
    torch.manual_seed(0)
    backbone = build_backbone(name, pretrained=name.startswith("efficientnet"))
    return PeriodClassifier(backbone, {"period": classes}).eval()


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("baseline", ["black", "blur"])
def test_every_method_gives_finite_maps_of_the_input_size(name, baseline):
    model = model_for(name)
    cfg = AttributionConfig(ig_steps=8, ig_baseline=baseline, internal_batch_size=16)
    x = torch.randn(3, 3, 64, 64)
    maps, seconds = Attributor(model, cfg, model.backbone.mean, model.backbone.std).maps(x, torch.tensor([0, 1, 2]))
    assert set(maps) == {"guided_backprop", "integrated_gradients", "grad_cam"}
    for method, heat in maps.items():
        assert heat.shape == (3, 64, 64), method
        assert torch.isfinite(heat).all() and (heat >= 0).all(), method
        nonzero = heat.flatten(1).amax(1).gt(0)
        # Grad-CAM may be all zero for an image (ReLU of a negative weighted sum); the others never are
        assert nonzero.any() if method == "grad_cam" else nonzero.all(), f"{method}: all-zero maps"
        assert seconds[method] >= 0


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_guided_backprop_overrides_every_activation(name):
    model = model_for(name)
    guided, count = guided_copy(model)
    acts = [m for m in guided.modules() if isinstance(m, GuidedActivation)]
    assert count == len(acts) > 0
    assert not any(isinstance(m, torch.nn.ReLU | torch.nn.ReLU6) for m in guided.modules())
    # the guided rule: the gradient leaving every activation (towards the input) is non-negative
    leaving = []
    hooks = [a.register_full_backward_hook(lambda mod, gin, gout: leaving.append(gin[0])) for a in acts]
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    guided(x)["period"][:, 1].sum().backward()
    for h in hooks:
        h.remove()
    assert len(leaving) >= len(acts)  # re-used modules (ResNet) fire once per call
    assert all((g >= 0).all() for g in leaving if g is not None)
    # ...which plain backprop does not give, so the maps differ
    x = torch.randn(2, 3, 64, 64)
    target = torch.tensor([1, 2])
    cfg = AttributionConfig(methods=["guided_backprop"])
    gb = Attributor(model, cfg, model.backbone.mean, model.backbone.std).maps(x, target)[0]["guided_backprop"]
    plain = plain_gradient(model, x, target).abs().sum(1)
    assert not torch.allclose(gb, plain, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("mode", [False, True])
def test_flush_denormal_is_scoped(mode):
    """The sanity check flushes denormals for speed; the caller's mode (training, the next run) comes back."""
    if not torch.set_flush_denormal(mode):
        pytest.skip("this CPU cannot flush denormals")
    try:
        assert flushes_denormals() is mode
        with flush_denormal():
            assert flushes_denormals()
        assert flushes_denormals() is mode
    finally:
        torch.set_flush_denormal(False)


@pytest.mark.slow
def test_captum_guided_backprop_is_silently_plain_on_relu6():
    """Why we build our own: Captum's GuidedBackprop only hooks nn.ReLU (DESIGN.md)."""
    model = model_for("efficientnet_lite0")

    class Period(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, x):
            return self.m(x)["period"]

    x = torch.randn(2, 3, 64, 64)
    target = torch.tensor([1, 2])
    captum_gb = GuidedBackprop(Period()).attribute(x, target=target)
    torch.testing.assert_close(captum_gb, plain_gradient(model, x, target))


def planted_images(n: int, rng: np.random.Generator, size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images with a patch in the top-left corner whose colour is the class (red 0, green 1):
    the only evidence for either class is in that corner."""
    x = rng.normal(0, 0.3, (n, 3, size, size)).astype(np.float32)
    y = np.arange(n) % 2
    for i, label in enumerate(y):
        r, c = rng.integers(2, 12, size=2)
        x[i, int(label), r : r + 24, c : c + 24] = 2.5
    return torch.from_numpy(x), torch.from_numpy(y)


@pytest.mark.slow
def test_grad_cam_puts_its_mass_on_a_planted_patch():
    """A pretrained backbone with a head trained on the planted set: Grad-CAM must find the corner."""
    torch.manual_seed(0)
    model = model_for("efficientnet_lite0", classes=2)
    x, y = planted_images(64, np.random.default_rng(0))
    with torch.no_grad():
        features = model.embed(x)
    head = model.heads["period"]
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head(features), y).backward()
        opt.step()
    xt, yt = planted_images(16, np.random.default_rng(1))
    assert (model(xt)["period"].argmax(1) == yt).float().mean() >= 0.9  # the head learned the patch
    cfg = AttributionConfig(methods=["grad_cam"])
    cam = Attributor(model, cfg, model.backbone.mean, model.backbone.std).maps(xt, yt)[0]["grad_cam"]
    shares = [float(heat[:64, :64].sum() / heat.sum()) for heat in cam]
    assert np.mean(shares) > 0.6, shares  # the top-left quadrant; uniform would be 0.25 (measured 0.74)


def test_maps_round_trip_through_png():
    rng = np.random.default_rng(0)
    heat = rng.random((224, 224)).astype(np.float32) ** 4
    png, scale = encode_map(heat, 64)
    back = decode_map(png)
    assert back.shape == (64, 64) and back.max() == 1.0 and back.min() >= 0
    assert scale > 0 and len(png) < 64 * 64 + 200
    assert spearman(heat, back) > 0.95  # quantisation keeps the ranking


def test_agreement_measures():
    a = np.zeros((64, 64), np.float32)
    a[:24, :24] = 1  # hot regions larger than the top 10%, so ties among cold pixels do not count
    b = a.copy()
    c = np.zeros((64, 64), np.float32)
    c[-24:, -24:] = 1
    assert top_overlap(a, b) == 1.0 and top_overlap(a, c) == 0.0
    gradient = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)  # no ties
    assert spearman(gradient, gradient) == pytest.approx(1.0)
    assert spearman(gradient, -gradient) == pytest.approx(-1.0)
