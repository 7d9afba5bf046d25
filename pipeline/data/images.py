"""Robust image decoding: every file either becomes an RGB image or a `BadImage` with a reason.

Real collections hold truncated downloads, HTML pages saved as .jpg, CMYK scans, 16-bit TIFFs
and the odd gigapixel file. None of these may stop a run, and none may pass silently, so every
failure is turned into one exception type whose message is the human-readable reason.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
ORIENTATION = 0x0112  # EXIF tag


class BadImage(Exception):
    """A file that cannot be used as an image; str(exc) is the reason shown to people."""


def open_rgb(path: str | Path, draft: int | None = None) -> Image.Image:
    """Open `path` fully decoded as RGB, EXIF orientation applied.

    `draft` (pixels) lets JPEGs decode at a reduced DCT scale whose shorter side stays at
    least that large: a 6000 px scan needed at 256 px decodes several times faster.
    """
    return _open(path, draft)[0]


def _open(path: str | Path, draft: int | None) -> tuple[Image.Image, tuple[int, int]]:
    """open_rgb plus the original (pre-draft, EXIF-rotated) width and height."""
    path = Path(path)
    if not path.exists():
        raise BadImage("file not found")
    if path.is_dir():
        raise BadImage("not a file (directory)")
    if path.stat().st_size == 0:
        raise BadImage("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            width, height = img.size
            if draft and img.format == "JPEG":
                img.draft("RGB", (draft, draft))
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImage(f"image too large: {_dims(path)} exceeds the limit of {Image.MAX_IMAGE_PIXELS} pixels") from None
    except UnidentifiedImageError:
        raise BadImage("not an image: format not recognised") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadImage(f"truncated or corrupt image: {exc}") from None
    except Exception as exc:  # a decoder bug must not stop a run either
        raise BadImage(f"unreadable image: {type(exc).__name__}: {exc}") from None
    try:
        if img.getexif().get(ORIENTATION, 1) in (5, 6, 7, 8):
            width, height = height, width
        img = ImageOps.exif_transpose(img) or img
    except Exception:  # a broken EXIF block is not worth losing the picture over
        pass
    return to_rgb(img), (width, height)


def _dims(path: Path) -> str:
    """Size of an over-limit image, read from its header without decoding."""
    try:
        limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            with Image.open(path) as img:
                return f"{img.width}x{img.height}"
        finally:
            Image.MAX_IMAGE_PIXELS = limit
    except Exception:
        return "its size"


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB: alpha over white, high bit depths scaled (not clipped)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_to_uint8(np.asarray(img), mode), "L").convert("RGB")
    if mode == "P" and "transparency" in img.info or mode in ALPHA_MODES:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def _to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """Scale 16/32-bit integer or float pixels to 0..255 by the range they were stored in."""
    lo, hi = float(a.min()), float(a.max())
    if mode.startswith("I;16"):
        lo, top = 0.0, 65535.0  # the container says 16 bits, even if this picture is dark
    elif a.dtype.kind == "f" and lo >= 0 and hi <= 1.0:
        lo, top = 0.0, 1.0
    elif a.dtype.kind != "f" and lo >= 0 and hi <= 255:
        lo, top = 0.0, 255.0
    elif a.dtype.kind != "f" and lo >= 0 and hi <= 65535:
        lo, top = 0.0, 65535.0  # 16-bit samples widened to 32-bit "I"
    else:
        top = max(hi, lo + 1.0)  # anything else: stretch its own range
    scaled = (a.astype(np.float64) - lo) * (255.0 / (top - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def square_pad(img: Image.Image, fill: int = 0) -> Image.Image:
    """Pad to a square, image centred, black bars: a painting is never cropped or stretched."""
    w, h = img.size
    side = max(w, h)
    if w == h:
        return img
    out = Image.new(img.mode, (side, side), fill)
    out.paste(img, ((side - w) // 2, (side - h) // 2))
    return out


def thumbnail_jpeg(img: Image.Image, max_side: int, quality: int = 85) -> bytes:
    """JPEG bytes of `img` scaled so its longer side is `max_side` (aspect kept)."""
    w, h = img.size
    scale = max_side / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = img.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0) if size != img.size else img
    buf = io.BytesIO()
    small.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def decode_square(path: str | Path, size: int, thumb_size: int = 192) -> tuple[np.ndarray, int, int, bytes]:
    """Decode once for the cache: (size x size x 3 uint8 padded+resized, width, height, thumbnail).

    The square is resized from the padded image exactly like the reference transform
    (SquarePad then Resize), so cached pixels match what a single-image prediction sees.
    """
    img, (width, height) = _open(path, draft=max(size, thumb_size))
    thumb = thumbnail_jpeg(img, thumb_size)
    square = square_pad(img).resize((size, size), Image.Resampling.BILINEAR)
    return np.array(square, dtype=np.uint8), width, height, thumb
