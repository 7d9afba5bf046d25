"""Saliency maps as small 8-bit PNGs, their agreement, and overlays — numpy and PIL only.

No torch here, so the dashboard can decode and draw stored maps without loading a model.
A stored map covers the model's input: the center crop of the square-padded image.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

TOP_SHARE = 0.1  # "top-k%" overlap uses the hottest 10% of pixels
AGREEMENT_SIZE = 32  # maps are compared at this resolution: rank statistics at full size mostly measure noise


def encode_map(heat: np.ndarray, size: int) -> tuple[bytes, float]:
    """A non-negative (H, W) map → (size×size greyscale PNG, scale): pixel 255 means `scale` or more.

    Each map is scaled by its own 99.5th percentile, so a few extreme gradients do not turn
    the rest black; the scale is kept so raw magnitudes can be compared if needed.
    """
    heat = np.nan_to_num(np.asarray(heat, np.float32), nan=0.0, posinf=0.0, neginf=0.0).clip(min=0)
    img = Image.fromarray(heat, mode="F").resize((size, size), Image.Resampling.BOX)
    small = np.asarray(img, np.float32)
    scale = float(np.percentile(small, 99.5))
    if scale <= 0:
        scale = float(small.max()) or 1.0
    u8 = np.round(np.clip(small / scale, 0, 1) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(u8, mode="L").save(buf, "PNG", optimize=True)
    return buf.getvalue(), scale


def decode_map(png: bytes) -> np.ndarray:
    """Stored PNG → float map in [0, 1]."""
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), np.float32) / 255.0


def _pool(heat: np.ndarray, size: int = AGREEMENT_SIZE) -> np.ndarray:
    return np.asarray(Image.fromarray(np.asarray(heat, np.float32), mode="F").resize((size, size),
                                                                                   Image.Resampling.BOX))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation of two maps (compared at AGREEMENT_SIZE²)."""
    ra = _pool(a).ravel().argsort().argsort().astype(np.float64)
    rb = _pool(b).ravel().argsort().argsort().astype(np.float64)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denom) if denom else 0.0


def top_overlap(a: np.ndarray, b: np.ndarray, share: float = TOP_SHARE) -> float:
    """Intersection over union of the hottest `share` of pixels of two maps."""
    pa, pb = _pool(a).ravel(), _pool(b).ravel()
    k = max(1, int(round(share * pa.size)))
    sa, sb = set(np.argpartition(-pa, k - 1)[:k]), set(np.argpartition(-pb, k - 1)[:k])
    return len(sa & sb) / len(sa | sb)


def colorize(heat: np.ndarray) -> np.ndarray:
    """[0, 1] map → RGB uint8 with a black-red-yellow-white ("hot") ramp."""
    h = np.clip(heat, 0, 1)[..., None] * 3.0
    rgb = np.concatenate([np.clip(h, 0, 1), np.clip(h - 1, 0, 1), np.clip(h - 2, 0, 1)], axis=-1)
    return (rgb * 255).astype(np.uint8)


def crop_box(width: int, height: int, resize: int, crop: int) -> tuple[float, float, float, float]:
    """Where the model's input (center crop of the square-padded, resized image) lies in the
    original image, as (left, top, right, bottom) in original pixels (may extend past the edges)."""
    side = max(width, height)
    scale = side / resize
    margin = (resize - crop) / 2 * scale
    left0, top0 = (width - side) / 2, (height - side) / 2
    return left0 + margin, top0 + margin, left0 + side - margin, top0 + side - margin


def overlay(image: Image.Image, heat: np.ndarray, resize: int, crop: int, alpha: float = 0.5) -> Image.Image:
    """The map blended over an image (original aspect): placed where the model's input came from."""
    image = image.convert("RGB")
    w, h = image.size
    left, top, right, bottom = crop_box(w, h, resize, crop)
    box_w, box_h = max(1, round(right - left)), max(1, round(bottom - top))
    colour = Image.fromarray(colorize(heat)).resize((box_w, box_h), Image.Resampling.BILINEAR)
    weight = Image.fromarray((np.clip(heat, 0, 1) * 255 * alpha).astype(np.uint8)).resize(
        (box_w, box_h), Image.Resampling.BILINEAR
    )
    layer = Image.new("RGB", (w, h))
    mask = Image.new("L", (w, h), 0)
    layer.paste(colour, (round(left), round(top)))
    mask.paste(weight, (round(left), round(top)))
    return Image.composite(layer, image, mask)
