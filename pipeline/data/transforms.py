"""The reference's image transform, and the same thing on cached uint8 batches.

`reference_transform` is the per-image PIL pipeline of the reference experiment (SquarePad →
Resize → CenterCrop → ToTensor → Normalize); it serves single new images. Training reads
images that the cache already padded and resized, so `BatchTransform` only crops, flips and
normalises whole batches, on whatever device they are on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image
from torchvision import transforms as T

from pipeline.data.images import square_pad

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SquarePad:
    """Pad a PIL image to a square with black bars, image centred (never crop or stretch a painting)."""

    def __init__(self, fill: int = 0) -> None:
        self.fill = fill

    def __call__(self, img: Image.Image) -> Image.Image:
        return square_pad(img, self.fill)

    def __repr__(self) -> str:
        return f"SquarePad(fill={self.fill})"


def reference_transform(
    resize: int = 256, crop: int = 224, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> T.Compose:
    """PIL RGB image → normalised (3, crop, crop) tensor, as the reference did it."""
    return T.Compose([SquarePad(), T.Resize(resize), T.CenterCrop(crop), T.ToTensor(), T.Normalize(mean, std)])


class BatchTransform(torch.nn.Module):
    """uint8 (B, H, W, 3) cached squares → normalised float (B, 3, crop, crop).

    Centre crop as torchvision's CenterCrop does it; with `hflip`, each image is mirrored
    with probability 1/2, in training only (evaluation stays deterministic).
    """

    def __init__(self, crop: int, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 hflip: bool = False) -> None:
        super().__init__()
        self.crop = crop
        self.hflip = hflip
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor, train: bool = False) -> torch.Tensor:
        _, h, w, _ = x.shape
        top, left = int(round((h - self.crop) / 2.0)), int(round((w - self.crop) / 2.0))
        x = x[:, top : top + self.crop, left : left + self.crop, :].permute(0, 3, 1, 2)
        x = x.float().div_(255.0)
        if train and self.hflip:
            flip = torch.rand(x.shape[0], device=x.device) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        return ((x - mean) / std).contiguous()
