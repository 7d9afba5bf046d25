"""The reference's image transform, and the same thing on cached uint8 batches.

`reference_transform` is the per-image PIL pipeline of the reference experiment (SquarePad →
Resize → CenterCrop → ToTensor → Normalize, with the pad and resize done as one `SquareResize`,
which resizes before it pads so a strip never costs its longer side squared). No run predicts with
it: it is the yardstick that tests hold `BatchTransform` to and the "old way" that
benchmarks/input_pipeline.py times. Every image a model sees, in training, evaluation, `explain` and
the Upload page, is padded and resized by `images.decode_square` (the cache's decoder), and
`BatchTransform` then crops, flips and normalises whole batches, on whatever device they are on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

from pipeline.data.images import pad_resize, square_pad

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SquarePad:
    """Pad a PIL image to a square with black bars, image centred (never crop or stretch a painting).

    At full size: (longer side)^2 pixels. Before a resize, use SquareResize, which gives the same picture.
    """

    def __init__(self, fill: int = 0) -> None:
        self.fill = fill

    def __call__(self, img: Image.Image) -> Image.Image:
        return square_pad(img, self.fill)

    def __repr__(self) -> str:
        return f"SquarePad(fill={self.fill})"


class SquareResize:
    """SquarePad then Resize(size) in one step that resizes first: memory bounded by the output, not the input."""

    def __init__(self, size: int, fill: int = 0) -> None:
        self.size = size
        self.fill = fill

    def __call__(self, img: Image.Image) -> Image.Image:
        return pad_resize(img, self.size, self.fill)

    def __repr__(self) -> str:
        return f"SquareResize(size={self.size}, fill={self.fill})"


def reference_transform(
    resize: int = 256, crop: int = 224, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> T.Compose:
    """PIL RGB image → normalised (3, crop, crop) tensor, as the reference did it (pad, resize, crop).

    The yardstick for `BatchTransform` over `decode_square`'s squares; runs do not call it.
    """
    return T.Compose([SquareResize(resize), T.CenterCrop(crop), T.ToTensor(), T.Normalize(mean, std)])


CONTENT_LEVEL = 8  # a row or column of the padded square with no channel above this is a black bar
TTA_CROPS = ("top-left", "top-right", "bottom-left", "bottom-right", "middle")  # `tta: [crops]`, inside the painting
TTA_CROP_SCALE = 0.8  # a test-time crop's side, as a share of the painting's shorter side


class BatchTransform(torch.nn.Module):
    """uint8 (B, H, W, 3) cached squares → normalised float (B, 3, crop, crop).

    Evaluation: centre crop as torchvision's CenterCrop does it, or one of the test-time `views`: its mirror, or a
    square crop of the painting itself (found inside its padding; side 0.8 of its shorter side) at one of its four
    corners or its middle, resized to `crop`: never a view of bars, nor the centre view again when resize = crop.
    Training: with `crop_scale`, a random resized crop (area share in [min, max], aspect 3/4–4/3) of the
    painting itself, found inside its black padding, so no crop is bars only and colour and brushwork are
    kept (no colour jitter); with `hflip`, each image is mirrored with probability 1/2.
    """

    mean: torch.Tensor  # (1, 3, 1, 1) buffers, registered in __init__
    std: torch.Tensor

    def __init__(self, crop: int, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 hflip: bool = False, crop_scale: Sequence[float] | None = None) -> None:
        super().__init__()
        self.crop = crop
        self.hflip = hflip
        self.crop_scale = tuple(crop_scale) if crop_scale else None
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor, train: bool = False, view: str = "centre") -> torch.Tensor:
        if train and self.crop_scale:
            lo, hi = self.crop_scale
            x = torch.stack([self._random_crop(img, lo, hi) for img in x.permute(0, 3, 1, 2).float().div_(255.0)])
        elif view.removesuffix("-flip") in TTA_CROPS:
            place = view.removesuffix("-flip")
            x = torch.stack([self._painting_crop(img, place) for img in x.permute(0, 3, 1, 2).float().div_(255.0)])
        else:
            x = self._fixed_crop(x).permute(0, 3, 1, 2).float().div_(255.0)
        if train and self.hflip:
            flip = torch.rand(x.shape[0], device=x.device) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        if view.endswith("flip"):
            x = x.flip(-1)
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        return ((x - mean) / std).contiguous()

    def _fixed_crop(self, x: torch.Tensor) -> torch.Tensor:
        """The centre crop of (B, H, W, 3), as torchvision's CenterCrop places it."""
        _, h, w, _ = x.shape
        top, left = int(round((h - self.crop) / 2.0)), int(round((w - self.crop) / 2.0))
        return x[:, top : top + self.crop, left : left + self.crop, :]

    def _painting_crop(self, img: torch.Tensor, place: str) -> torch.Tensor:
        """(3, H, W) in [0, 1] → the square test-time crop of the painting inside the padding at `place` (a corner
        or "middle"), side TTA_CROP_SCALE of its shorter side, resized to (3, crop, crop)."""
        top0, bottom, left0, right = content_box(img)
        side = max(1, int(round(TTA_CROP_SCALE * min(bottom - top0, right - left0))))
        top = top0 if place.startswith("top") else bottom - side if place.startswith("bottom") else (
            top0 + (bottom - top0 - side) // 2)
        left = left0 if place.endswith("left") else right - side if place.endswith("right") else (
            left0 + (right - left0 - side) // 2)
        patch = img[None, :, top : top + side, left : left + side]
        if side == self.crop:
            return patch[0]
        return F.interpolate(patch, size=(self.crop, self.crop), mode="bilinear", align_corners=False,
                             antialias=True)[0]

    def _random_crop(self, img: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        """(3, H, W) in [0, 1] → a random resized crop (area share in [lo, hi]) of the painting inside the padding,
        (3, crop, crop)."""
        top0, bottom, left0, right = content_box(img)
        ch, cw = bottom - top0, right - left0
        area = ch * cw * float(torch.empty(1).uniform_(lo, hi))
        aspect = math.exp(float(torch.empty(1).uniform_(math.log(3 / 4), math.log(4 / 3))))
        h = max(1, min(ch, int(round(math.sqrt(area / aspect)))))
        w = max(1, min(cw, int(round(math.sqrt(area * aspect)))))
        top = top0 + int(torch.randint(0, ch - h + 1, (1,)))
        left = left0 + int(torch.randint(0, cw - w + 1, (1,)))
        patch = img[None, :, top : top + h, left : left + w]
        return F.interpolate(patch, size=(self.crop, self.crop), mode="bilinear", align_corners=False,
                             antialias=True)[0]


def content_box(img: torch.Tensor) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of what is not black padding in a (3, H, W) image in [0, 1]."""
    lit = img.amax(0) > CONTENT_LEVEL / 255.0
    rows, cols = torch.nonzero(lit.any(1)).flatten(), torch.nonzero(lit.any(0)).flatten()
    if len(rows) == 0:  # an all-black image: all of it
        return 0, img.shape[1], 0, img.shape[2]
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def tta_views(tta: Sequence[str]) -> list[str]:
    """The views a test-time-augmented prediction averages: the centre crop, its mirror, five crops of the painting
    (its four corners and its middle)."""
    views = ["centre"]
    if "flip" in tta:
        views.append("centre-flip")
    if "crops" in tta:
        views += list(TTA_CROPS)
    return views
