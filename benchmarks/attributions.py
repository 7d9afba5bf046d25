"""Saliency maps per second, per method, beside forward+backward images/s of the same model.

Real paintings from the shared WikiArt set ($PAINTINGS_SHARED), a pretrained backbone, the
methods as `make artifacts` runs them. Ratios are measured side by side in one process.
`run(quick)` is the same measurement as `python -m benchmarks` reports it.

    .venv/bin/python -m benchmarks.attributions [--backbone efficientnet_lite0] [--size 144] [--images 32]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import common
from pipeline.attribute import Attributor
from pipeline.config import DEFAULT_SHARED, AttributionConfig
from pipeline.data.images import decode_square
from pipeline.data.transforms import BatchTransform
from pipeline.models.backbones import build_backbone
from pipeline.models.classifier import PeriodClassifier


def paintings(n: int, resize: int) -> torch.Tensor:
    root = Path(os.environ.get("PAINTINGS_SHARED", DEFAULT_SHARED)) / "wikiart-styles"
    files = sorted(root.glob("*/*.jpg"))[:: max(1, 7000 // n)][:n]
    return torch.from_numpy(np.stack([decode_square(f, resize)[0] for f in files]))


NAME = "attributions"
QUICK = {"size": 112, "images": 64, "batch": 16, "ig_steps": 16}
FULL = {"size": 224, "images": 128, "batch": 16, "ig_steps": 32}


def measure(backbone: str, size: int, images: int, batch: int, ig_steps: int) -> tuple[float, dict[str, float]]:
    """(forward+backward images/s, maps/s per method), timed batch by batch in turn after a warm-up."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bb = build_backbone(backbone, pretrained=backbone.startswith("efficientnet"))
    model = PeriodClassifier(bb, {"period": 7}).eval().to(device)
    transform = BatchTransform(size, mean=bb.mean, std=bb.std)
    pixels = paintings(images, round(size * 256 / 224)).to(device)
    cfg = AttributionConfig(ig_steps=ig_steps, batch_size=batch)
    attributor = Attributor(model, cfg, bb.mean, bb.std)

    def input_gradient(x: torch.Tensor, target: torch.Tensor) -> None:
        """One forward+backward to the input, what every gradient map needs at least (no weight gradients)."""
        xg = x.clone().requires_grad_(True)
        torch.autograd.grad(model(xg)["period"].gather(1, target[:, None]).sum(), xg)
        if device.type == "cuda":
            torch.cuda.synchronize()

    warm = transform(pixels[:2], train=False)  # warm-up: first calls allocate, Captum and the guided copy set up
    input_gradient(warm, torch.zeros(2, dtype=torch.long, device=device))
    attributor.maps(warm, torch.zeros(2, dtype=torch.long, device=device))
    seconds = dict.fromkeys(cfg.methods, 0.0)
    fwd_bwd = 0.0
    for start in range(0, images, batch):
        x = transform(pixels[start : start + batch], train=False)
        target = torch.zeros(len(x), dtype=torch.long, device=device)
        t0 = time.perf_counter()
        input_gradient(x, target)
        fwd_bwd += time.perf_counter() - t0
        _, took = attributor.maps(x, target)
        for m, t in took.items():
            seconds[m] += t
    return images / fwd_bwd, {m: images / t for m, t in seconds.items()}


def run(quick: bool = True) -> list[dict]:
    """The benchmark as `python -m benchmarks` runs it: one table, one summary row per method."""
    p = QUICK if quick else FULL
    backbone = "efficientnet_lite0"
    with common.quiet():
        base, rates = measure(backbone, p["size"], p["images"], p["batch"], p["ig_steps"])
    print(f"{backbone} (pretrained) at {p['size']}px, {p['images']} real paintings, batch {p['batch']}, "
          f"IG {p['ig_steps']} steps")
    rows = [["forward+backward", base, 1.0, "1"]]
    expected = {"integrated_gradients": f"1/{p['ig_steps']} = {1 / p['ig_steps']:.3f}"}
    rows += [[m, r, r / base, expected.get(m, "~1")] for m, r in rates.items()]
    common.table(f"Attribution maps/s vs forward+backward images/s ({backbone}, {p['size']}px)",
                 ["method", "maps/s", "÷ forward+backward", "cost model (passes)"], rows,
                 note="Each map costs about one forward+backward pass (Integrated Gradients: one per step); the "
                      "timings include Captum's bookkeeping and the copy to the CPU.")
    return [common.result(NAME, f"{m} maps/s ÷ fwd+bwd images/s", r / base) for m, r in rates.items()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=144, help="crop size (the cache holds size * 256/224)")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--ig-steps", type=int, default=16)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    base, rates = measure(args.backbone, args.size, args.images, args.batch, args.ig_steps)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, device {device}, "
          f"torch {torch.__version__}; {args.backbone} at {args.size}px, {args.images} real paintings, "
          f"IG {args.ig_steps} steps")
    print(f"{'method':24s} {'maps/s':>8s} {'vs fwd+bwd':>11s}")
    print(f"{'forward+backward':24s} {base:8.1f} {1.0:10.2f}x")
    for m, rate in rates.items():
        print(f"{m:24s} {rate:8.1f} {rate / base:10.3f}x")

if __name__ == "__main__":
    main()
