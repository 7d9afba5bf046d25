"""Saliency maps per second, per method, beside forward+backward images/s of the same model.

Real paintings from the shared WikiArt set ($PAINTINGS_SHARED), a pretrained backbone, the
methods as `make artifacts` runs them. Ratios are measured side by side in one process.

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=144, help="crop size (the cache holds size * 256/224)")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--ig-steps", type=int, default=16)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    backbone = build_backbone(args.backbone, pretrained=args.backbone.startswith("efficientnet"))
    model = PeriodClassifier(backbone, {"period": 7}).eval().to(device)
    transform = BatchTransform(args.size, mean=backbone.mean, std=backbone.std)
    pixels = paintings(args.images, round(args.size * 256 / 224)).to(device)
    cfg = AttributionConfig(ig_steps=args.ig_steps, batch_size=args.batch)
    attributor = Attributor(model, cfg, backbone.mean, backbone.std)

    seconds = dict.fromkeys(cfg.methods, 0.0)
    fwd_bwd = 0.0
    for start in range(0, args.images, args.batch):
        x = transform(pixels[start : start + args.batch], train=False)
        target = torch.zeros(len(x), dtype=torch.long, device=device)
        t0 = time.perf_counter()
        xg = x.clone().requires_grad_(True)
        model(xg)["period"].gather(1, target[:, None]).sum().backward()
        fwd_bwd += time.perf_counter() - t0
        _, took = attributor.maps(x, target)
        for m, t in took.items():
            seconds[m] += t
    base = args.images / fwd_bwd
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, device {device}, "
          f"torch {torch.__version__}; {args.backbone} at {args.size}px, {args.images} real paintings, "
          f"IG {args.ig_steps} steps")
    print(f"{'method':24s} {'maps/s':>8s} {'vs fwd+bwd':>11s}")
    print(f"{'forward+backward':24s} {base:8.1f} {1.0:10.2f}x")
    for m, t in seconds.items():
        rate = args.images / t
        print(f"{m:24s} {rate:8.1f} {rate / base:10.3f}x")


if __name__ == "__main__":
    main()
