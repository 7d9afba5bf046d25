"""Which frozen features carry style? A linear probe on the shared WikiArt set's validation split.

The experiment behind `pooling: style` in configs/wikiart-best.yaml: a pretrained backbone's features of every
painting (the pipeline's own data preparation, split and classifier body), in both orientations, then a
logistic regression (standardised features, C chosen on validation) on the pooled features alone against the
pooled features + style statistics, with and without flips. Only the validation split is scored.

    .venv/bin/python -m experiments.probe_features [--backbone efficientnet_lite0] [--size 224]

Measured with the first version of this probe (sample std instead of the population std used now) on the 2-core
CPU (efficientnet_lite0, 224 px; 16 min for both orientations): pooled 0.482, style 0.537 (C = 0.01); flips in
training + flip TTA: 0.483 / 0.542.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from pipeline.config import DEFAULT_SHARED, DataConfig, SplitConfig
from pipeline.data.prepare import prepare
from pipeline.data.transforms import BatchTransform
from pipeline.inference import forward_pass
from pipeline.models.backbones import build_backbone
from pipeline.models.classifier import PeriodClassifier


def features(backbone: str, size: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, int]:
    """Style-pooled features of every painting per view, their splits and labels, the pooled part's width."""
    root = os.environ.get("PAINTINGS_SHARED", str(DEFAULT_SHARED))
    cfg = DataConfig(source="imagefolder", path=f"{root}/wikiart-styles", resize=size, crop=size,
                     split=SplitConfig(mode="fractions", val=0.2, test=0.2, seed=0))
    data = prepare(cfg, "artifacts/cache", progress=True)
    bb = build_backbone(backbone, pretrained=True)
    model = PeriodClassifier(bb, {"period": len(data.periods)}, pooling="style")
    transform = BatchTransform(size, mean=bb.mean, std=bb.std)
    rows = data.images["cache_index"].to_numpy()
    views = {view: forward_pass(model, transform, data.pixels, rows, 64, torch.device("cpu"), heads=False,
                                desc=view, view=view)[0] for view in ("centre", "centre-flip")}
    return views, data.images["split"].to_numpy(), data.images["period"].to_numpy(), bb.dim


def probe(views: dict[str, np.ndarray], split: np.ndarray, y: np.ndarray, cols: np.ndarray, flips: bool,
          c: float) -> float:
    """Validation accuracy of a logistic regression on columns `cols` (flips: both orientations in training,
    their mean probability at validation)."""
    train, val = split == "train", split == "val"
    names = ["centre", "centre-flip"] if flips else ["centre"]
    x = np.concatenate([views[n][train][:, cols] for n in names])
    scaler = StandardScaler().fit(x)
    clf = LogisticRegression(C=c, max_iter=3000).fit(scaler.transform(x), np.concatenate([y[train]] * len(names)))
    probs = np.mean([clf.predict_proba(scaler.transform(views[n][val][:, cols])) for n in names], axis=0)
    return float((clf.classes_[probs.argmax(1)] == y[val]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    views, split, y, dim = features(args.backbone, args.size)
    every = np.arange(views["centre"].shape[1])
    print("| features | C | val acc | val acc, flips |\n|---|---|---|---|")
    for name, cols in (("pooled", every[:dim]), ("pooled + style statistics", every)):
        for c in (0.01, 0.03, 0.1):
            print(f"| {name} | {c} | {probe(views, split, y, cols, False, c):.3f} | "
                  f"{probe(views, split, y, cols, True, c):.3f} |", flush=True)


if __name__ == "__main__":
    main()
