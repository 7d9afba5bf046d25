"""Size and open time of an exported gallery of 500 real paintings with three saliency overlays each (at the
export's size, and larger), against the same gallery without overlays.

Thumbnails are real WikiArt paintings at the default thumbnail size (192 px JPEG, as the store keeps them); maps are
smooth random 64×64 8-bit PNGs (the default heatmap_size) for Grad-CAM, Integrated Gradients and Guided Backprop.
The file is made by the real functions (dashboard.export.overlays_of, dashboard.gallery_file.render); overlays are
JPEGs of at most OVERLAY_SIDE px (quality OVERLAY_QUALITY), or 160 px at quality 70. Open time: chromium
loads the file from disk (file://) to its load event, then to the first frame drawn after it; medians over rounds,
a fresh page each time.

    .venv/bin/python -m benchmarks.gallery_export [--full]
"""

from __future__ import annotations

import io
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from benchmarks import common
from dashboard.export import OVERLAY_QUALITY, OVERLAY_SIDE, overlays_of
from dashboard.gallery_file import Gallery, render
from pipeline.heatmaps import encode_map

NAME = "gallery export"
IMAGES = 500
METHODS = ("grad_cam", "integrated_gradients", "guided_backprop")
WIKIART = Path("/work/shared/datasets/wikiart-styles")


def thumbnails(n: int) -> list[tuple[str, str, bytes]]:
    """(image id, period, 192 px JPEG) for the first n paintings, cycling through the styles."""
    styles = sorted(p for p in WIKIART.iterdir() if p.is_dir())
    files = [sorted(s.glob("*.jpg")) for s in styles]
    out = []
    for i in range(n):
        style = styles[i % len(styles)]
        path = files[i % len(styles)][i // len(styles)]
        image = Image.open(path).convert("RGB")
        image.thumbnail((192, 192))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=85)
        out.append((f"{style.name}/{path.name}", style.name, buffer.getvalue()))
    return out


def smooth_map(rng: np.random.Generator) -> bytes:
    coarse = Image.fromarray(rng.random((7, 7)).astype(np.float32), mode="F").resize((64, 64),
                                                                                      Image.Resampling.BICUBIC)
    return encode_map(np.asarray(coarse), 64)[0]


def gallery(images: list[tuple[str, str, bytes]], maps: tuple[int, int] | None) -> Gallery:
    """The file's content; `maps`: (side, quality) of the overlays, None for none."""
    rng = np.random.default_rng(0)
    periods = sorted({p for _, p, _ in images})
    tiles = pd.DataFrame([{"image_id": i, "content_hash": uuid.uuid5(uuid.NAMESPACE_URL, i).hex, "true_label": p,
                           "pred_label": periods[(periods.index(p) + 1) % len(periods)], "confidence": 0.8,
                           "split": "test", "artist": None, "title": None, "date": None, "path": i, "thumbnail": t}
                          for i, p, t in images])
    overlays = {i: overlays_of(t, [(m, smooth_map(rng)) for m in METHODS], 256, 224, *maps) for i, _, t in images
                } if maps else {}
    return Gallery(title="benchmark", run_id="bench/run", export_id=uuid.uuid4().hex, made_at=datetime.now(),
                   model="EfficientNet-Lite0 pretrained on ImageNet", periods=periods, filter_words="all",
                   tiles=tiles, metrics={"accuracy": 0.8, "balanced_accuracy": 0.8, "macro_f1": 0.8, "n": 500},
                   overlays=overlays)


def open_times(path: Path, rounds: int) -> tuple[list[float], list[float]]:
    """Seconds from navigation to the load event, and to the first frame after it, per round."""
    from playwright.sync_api import sync_playwright

    loads, frames = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        for _ in range(rounds):
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            start = time.perf_counter()
            page.goto(path.as_uri(), wait_until="load")
            loads.append(time.perf_counter() - start)
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            frames.append(time.perf_counter() - start)
            page.close()
        browser.close()
    return loads, frames


def run(quick: bool) -> list[dict]:
    rounds = 3 if quick else 7
    images = thumbnails(IMAGES)
    rows, measured = [], {}
    with tempfile.TemporaryDirectory() as folder:
        variants = (("no overlays", None), (f"3 overlays, {OVERLAY_SIDE} px q{OVERLAY_QUALITY} (export)",
                                               (OVERLAY_SIDE, OVERLAY_QUALITY)), ("3 overlays, 160 px q70", (160, 70)))
        for label, maps in variants:
            start = time.perf_counter()
            page = render(gallery(images, maps)).encode("utf-8")
            made = time.perf_counter() - start
            path = Path(folder) / f"variant-{len(measured)}.html"
            path.write_bytes(page)
            loads, frames = open_times(path, rounds)
            measured[label] = (len(page), common.median(frames))
            rows.append([label, f"{len(page) / 1e6:.1f}", made, common.median(loads), common.median(frames)])
    common.table(f"Gallery file of {IMAGES} paintings (192 px thumbnails)",
                 ["variant", "MB", "make s", "open to load s", "open to first frame s"], rows,
                 note=f"median of {rounds} opens in chromium from disk (file://), 1400×1000")
    (size, frame), (size0, frame0) = measured[variants[1][0]], measured["no overlays"]
    return [common.result(NAME, "size with overlays / without", size / size0, note=f"{size / 1e6:.1f} MB"),
            common.result(NAME, "open time with overlays / without", frame / frame0, note=f"{frame:.2f} s")]


if __name__ == "__main__":
    common.standalone(run, __doc__, "7 opens per variant instead of 3")
