"""Robust image decoding: every file either becomes an RGB image or a `BadImage` with a reason.

Real collections hold truncated downloads, HTML pages saved as .jpg, CMYK scans, 16-bit TIFFs
and the odd gigapixel file. None of these may stop a run, and none may pass silently, so every
failure is turned into one exception type whose message is the human-readable reason.

Memory stays bounded by the pixel count of the file: over Image.MAX_IMAGE_PIXELS is refused
from the header, so is a strip longer than MAX_ASPECT:1 (a 142-byte 65535x1 PNG), and nothing
is ever allocated at the square of an image's longer side (`pad_resize` resizes, then pads).
"""

from __future__ import annotations

import errno
import io
import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
ORIENTATION = 0x0112  # EXIF tag
# Longer side over shorter side above which a file is not taken as a painting. Handscrolls photographed
# whole reach about 24:1 (A Thousand Li of Rivers and Mountains, 51.5 x 1191.5 cm); past 25:1 the picture is
# under 11 px tall in a 256 px square, and such files are banners, scan strips or broken headers.
MAX_ASPECT = 25.0
SYMLINK_LOOP = "symlink loop (the link leads back to itself)"


class BadImage(Exception):
    """A file that cannot be used as an image; str(exc) is the reason shown to people."""


def open_rgb(path: str | Path, draft: int | None = None) -> Image.Image:
    """Open `path` fully decoded as RGB, EXIF orientation applied.

    `draft` (pixels) lets JPEGs decode at a reduced DCT scale whose shorter side stays at
    least that large: a 6000 px scan needed at 256 px decodes several times faster. Other
    formats are reduced by the same rule right after decoding, before any full-size copy.
    """
    return _open(path, draft)[0]


def _open(path: str | Path, draft: int | None) -> tuple[Image.Image, tuple[int, int]]:
    """open_rgb plus the original (pre-draft, EXIF-rotated) width and height."""
    path = Path(path)
    problem = file_problem(path)
    if problem:
        raise BadImage(problem)
    img, (width, height) = _decode(path, draft)
    if draft:
        img = shrink(img, draft)
    try:
        if img.getexif().get(ORIENTATION, 1) in (5, 6, 7, 8):
            width, height = height, width
        img = ImageOps.exif_transpose(img) or img
    except Exception:  # a broken EXIF block is not worth losing the picture over
        pass
    return to_rgb(img), (width, height)


def file_problem(path: str | Path) -> str | None:
    """Why `path` cannot be read as a file at all (missing, a symlink loop, a directory, empty), else None."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return SYMLINK_LOOP
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return "file not found"
        return f"unreadable file: {exc.strerror or exc}"
    if stat.S_ISDIR(st.st_mode):
        return "not a file (directory)"
    if st.st_size == 0:
        return "empty file (0 bytes)"
    return None


def _decode(path: Path, draft: int | None) -> tuple[Image.Image, tuple[int, int]]:
    """Header checks (pixel count, aspect ratio) before any pixel is decoded, then the decode itself."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            try:
                width, height = img.size
                check_shape(width, height)
                if draft and img.format == "JPEG":
                    img.draft("RGB", (draft, draft))
                img.load()
            except BaseException:
                img.close()
                raise
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImage(f"image too large: {_dims(path)} exceeds the limit of {Image.MAX_IMAGE_PIXELS} pixels") from None
    except UnidentifiedImageError:
        raise BadImage("not an image: format not recognised") from None
    except MemoryError:
        raise BadImage("out of memory while decoding") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadImage(f"truncated or corrupt image: {exc}") from None
    except Exception as exc:  # a decoder bug must not stop a run either
        raise BadImage(f"unreadable image: {type(exc).__name__}: {exc}") from None
    return img, (width, height)


def check_shape(width: int, height: int) -> None:
    """Refuse a strip (longer side over MAX_ASPECT times the shorter) from its header alone."""
    long, short = max(width, height), min(width, height)
    if short <= 0 or long > MAX_ASPECT * short:
        ratio = f"{long / max(short, 1):.1f}".removesuffix(".0")
        raise BadImage(f"extreme aspect ratio: {width}x{height} is {ratio}:1, over the limit of {MAX_ASPECT:g}:1 "
                       "for a painting")


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


def shrink(img: Image.Image, least: int) -> Image.Image:
    """Box-reduce by the largest whole factor keeping both sides >= `least` (what JPEG draft does).

    Done before the EXIF turn and the RGB conversion so those copy a small picture, not a 80 Mpx one.
    Palette and 1-bit images are converted first (averaging palette indices is meaningless); 16-bit
    ones stay as they are (Image.reduce cannot take them; `_to_uint8` scales them in float32).
    """
    factor = min(img.width // least, img.height // least)
    if factor < 2 or img.mode.startswith("I;16"):
        return img
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "RGB")
    elif img.mode == "1":
        img = img.convert("L")
    try:
        return img.reduce(factor)
    except ValueError:  # a mode Image.reduce does not know: decode at full size, as before
        return img


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
    exact: type[np.floating] = np.float32 if max(abs(lo), abs(top)) < 2**24 else np.float64  # float32: half the memory
    scaled = a.astype(exact)
    scaled -= lo
    scaled *= 255.0 / (top - lo)
    np.rint(scaled, out=scaled)
    np.clip(scaled, 0, 255, out=scaled)
    return scaled.astype(np.uint8)


def square_pad(img: Image.Image, fill: int = 0) -> Image.Image:
    """Pad to a square at full size, image centred: (longer side)^2 pixels, so only for small images.

    The cache and the reference transform use `pad_resize`, which gives the same picture without that cost.
    """
    w, h = img.size
    side = max(w, h)
    if w == h:
        return img
    out = Image.new(img.mode, (side, side), fill)
    out.paste(img, ((side - w) // 2, (side - h) // 2))
    return out


def pad_resize(img: Image.Image, size: int, fill: int = 0,
               resample: Image.Resampling = Image.Resampling.BILINEAR) -> Image.Image:
    """A `size` x `size` square: the image resized so its longer side is `size`, centred between black bars.

    The same picture as padding to a square and resizing that (up to a pixel's rounding where image meets
    bar), but never allocates the full-size square: a 30000x10 strip padded first needed 2.7 GB.
    """
    w, h = img.size
    scale = size / max(w, h)
    inner = (max(1, round(w * scale)), max(1, round(h * scale)))
    if inner != img.size:
        img = img.resize(inner, resample)
    if inner == (size, size):
        return img
    out = Image.new(img.mode, (size, size), fill)
    out.paste(img, ((size - inner[0]) // 2, (size - inner[1]) // 2))
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

    The square is made exactly like the reference transform makes it (`pad_resize`), so cached
    pixels match what a single-image prediction sees.
    """
    img, (width, height) = _open(path, draft=max(size, thumb_size))
    thumb = thumbnail_jpeg(img, thumb_size)
    return np.array(pad_resize(img, size), dtype=np.uint8), width, height, thumb
