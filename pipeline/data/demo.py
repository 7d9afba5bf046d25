"""A deterministic synthetic "painting" set, so the whole pipeline runs with no download.

Five invented periods, each a palette plus a texture family (vertical stripes, grids,
chiaroscuro blobs, dabs, hard-edged diagonals); three invented artists per period, each a
variation of stroke scale and an accent colour; noise and jitter on top so it is learnable
but not trivial. A quarter of the works are "transitional": blended with a neighbouring
period's style, so a model makes real, mostly chronologically adjacent, mistakes to inspect.
Sizes and aspect ratios vary so square padding matters. Two deliberately bad files (empty,
truncated) are listed in the manifest so every demo run shows the skip path.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

VERSION = "2"
TRANSITIONAL_SHARE = 0.25
PERIODS = ["Synthetic Gothic", "Synthetic Renaissance", "Synthetic Baroque", "Synthetic Impressionism",
           "Synthetic Modern"]
ARTISTS_PER_PERIOD = 3
IMAGES_PER_ARTIST = 40
YEARS = [(1250, 1400), (1420, 1550), (1600, 1720), (1860, 1900), (1910, 1970)]
PALETTES = [  # (background, foreground) per period
    ((30, 40, 110), (205, 165, 55)),
    ((150, 80, 50), (215, 185, 125)),
    ((22, 14, 10), (235, 195, 140)),
    ((150, 190, 230), (240, 220, 150)),
    ((215, 30, 35), (25, 45, 200)),
]
ACCENTS = [(230, 230, 230), (40, 160, 70), (170, 40, 160)]
SCALES = [0.7, 1.0, 1.45]
MANIFEST_FIELDS = ["path", "period", "artist", "title", "date"]


def generate_demo(out_dir: Path, seed: int = 0) -> Path:
    """Write the demo images and manifest.csv under `out_dir` (skipped if already there); return the manifest."""
    out_dir = Path(out_dir)
    manifest, stamp = out_dir / "manifest.csv", out_dir / ".demo-version"
    tag = f"version={VERSION} seed={seed}"
    if manifest.exists() and stamp.exists() and stamp.read_text() == tag:
        return manifest
    rng = np.random.default_rng(seed)
    rows = []
    number = 0
    for p, period in enumerate(PERIODS):
        short = period.split()[-1]
        (out_dir / short.lower()).mkdir(parents=True, exist_ok=True)
        for a in range(ARTISTS_PER_PERIOD):
            artist = f"{short} Painter {'ABC'[a]}"
            for k in range(IMAGES_PER_ARTIST):
                number += 1
                w, h = (int(v) for v in rng.integers(80, 141, size=2))
                rel = f"{short.lower()}/{'abc'[a]}{k:02d}.jpg"
                Image.fromarray(_work(p, a, w, h, rng)).save(out_dir / rel, "JPEG", quality=90)
                rows.append([rel, period, artist, f"Synthetic study #{number}", str(int(rng.integers(*YEARS[p])))])
    rows += _bad_files(out_dir)
    tmp = manifest.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(MANIFEST_FIELDS)
        writer.writerows(rows)
    os.replace(tmp, manifest)
    stamp.write_text(tag)
    return manifest


def _work(period: int, artist: int, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """A work of `period`, or a transitional one blending in a neighbouring period's style."""
    own = _paint(period, artist, w, h, rng)
    if rng.random() >= TRANSITIONAL_SHARE:
        return own
    neighbour = int(np.clip(period + rng.choice([-1, 1]), 0, len(PERIODS) - 1))
    if neighbour == period:
        neighbour = period + 1 if period == 0 else period - 1
    mix = rng.uniform(0.3, 0.75)
    other = _paint(neighbour, artist, w, h, rng)
    return ((1 - mix) * own + mix * other).astype(np.uint8)


def _paint(period: int, artist: int, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """One h x w x 3 uint8 picture: the period's texture in its palette, the artist's scale and accent."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    scale = SCALES[artist] * rng.uniform(0.85, 1.15)
    phase = rng.uniform(0, 2 * np.pi)
    if period == 0:  # vertical stripes
        t = 0.5 + 0.5 * np.sin(2 * np.pi * x / (9 * scale) + phase)
    elif period == 1:  # grid
        t = 0.5 + 0.5 * np.sin(2 * np.pi * x / (14 * scale) + phase) * np.sin(2 * np.pi * y / (14 * scale))
    elif period == 2:  # a few lit blobs on dark
        t = np.zeros_like(x)
        for _ in range(int(rng.integers(1, 4))):
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), 18 * scale * rng.uniform(0.7, 1.3)
            t = np.maximum(t, np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r)))
    elif period == 3:  # dabs: blocky random field
        cell = max(2, int(round(5 * scale)))
        field = rng.random((h // cell + 1, w // cell + 1)).astype(np.float32)
        t = np.kron(field, np.ones((cell, cell), np.float32))[:h, :w]
    else:  # hard-edged diagonals
        t = (np.sin(2 * np.pi * (x + y) / (22 * scale) + phase) > 0).astype(np.float32)
    bg, fg = (np.array(c, np.float32) + rng.uniform(-20, 20, 3) for c in PALETTES[period])
    img = bg + t[..., None] * (fg - bg)
    ax, ay = int(rng.integers(0, w - w // 4)), int(rng.integers(0, h - h // 4))  # the artist's accent patch
    img[ay : ay + h // 4, ax : ax + w // 4] = 0.4 * img[ay : ay + h // 4, ax : ax + w // 4] + 0.6 * np.array(
        ACCENTS[artist], np.float32
    )
    img += rng.normal(0, 18, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _bad_files(out_dir: Path) -> list[list[str]]:
    """An empty file and a truncated JPEG, listed like any other image."""
    bad = out_dir / "bad"
    bad.mkdir(exist_ok=True)
    (bad / "empty.jpg").write_bytes(b"")
    buf = io.BytesIO()
    Image.fromarray(_paint(4, 0, 120, 90, np.random.default_rng(1))).save(buf, "JPEG", quality=90)
    (bad / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return [
        ["bad/empty.jpg", PERIODS[4], "Modern Painter A", "Synthetic study (empty file)", "1950"],
        ["bad/truncated.jpg", PERIODS[4], "Modern Painter A", "Synthetic study (truncated file)", "1951"],
    ]
