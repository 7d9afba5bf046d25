"""The near-copy detectors that need a model: `embedding` (cosine of a pretrained backbone's pooled features) and
`local` (each image's top-k embedding neighbours verified by ORB + RANSAC, pipeline/local_match.py).

Perceptual hashes miss details (a crop of a third of a painting) and stronger colour shifts; a pretrained
network's features see the same forms, and local features find a detail inside its work. They need a model, so
they live here rather than in pipeline/data (data code never imports models): `model_finder` returns the callable
that pipeline.data.prepare takes as `similar`, both detectors sharing one embedding pass. Features are of the
whole cached square (no centre crop), kept next to the cache so a second preparation of the same images reuses them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline import local_match
from pipeline.config import NearCopyConfig
from pipeline.data.near_copies import Link, LinkFinder, nearest, neighbour_pairs, similar_pairs
from pipeline.data.transforms import BatchTransform
from pipeline.inference import forward_pass
from pipeline.models.backbones import build_backbone
from pipeline.models.classifier import PeriodClassifier


def embed_cached(pixels: np.ndarray, rows: np.ndarray, backbone: str = "efficientnet_lite0", batch_size: int = 64,
                 progress: bool = False) -> np.ndarray:
    """Pooled features (n, dim) of the cached squares `rows`, computed once per cache file and backbone."""
    where = _feature_file(pixels, rows, backbone)
    if where is not None and where.exists():
        return np.load(where)
    bb = build_backbone(backbone, pretrained=True)
    model = PeriodClassifier(bb, {"period": 1})
    transform = BatchTransform(int(pixels.shape[1]), bb.mean, bb.std)  # crop = the whole square
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    features, _ = forward_pass(model, transform.to(device), pixels, np.asarray(rows), batch_size, device,
                               heads=False, desc="features (near-copies)", progress=progress)
    if where is not None:
        where.parent.mkdir(parents=True, exist_ok=True)
        tmp = where.with_suffix(".tmp.npy")
        np.save(tmp, features)
        tmp.replace(where)
    return features


def embedding_finder(threshold: float, backbone: str = "efficientnet_lite0", progress: bool = False) -> LinkFinder:
    """A `similar` callable for prepare: links between images whose features' cosine is >= `threshold`."""

    def find(images: pd.DataFrame, pixels: np.ndarray) -> list[Link]:
        features = embed_cached(pixels, images["cache_index"].to_numpy(), backbone, progress=progress)
        return similar_pairs(images["image_id"].astype(str).tolist(), features, threshold, "embedding")

    return find


def local_links(images: pd.DataFrame, pixels: np.ndarray, features: np.ndarray, candidates: int, min_inliers: int,
                progress: bool = False) -> list[Link]:
    """Links between each image and those of its `candidates` nearest embedding neighbours that ORB + RANSAC
    confirm with at least `min_inliers` inliers; score = min(1, inliers / 100) (local_match.score).

    Keypoints come from the cached squares (bars cropped off), one image decoded at a time, packed: ~16 KB an image."""
    ids = images["image_id"].astype(str).tolist()
    rows = images["cache_index"].to_numpy()
    widths, heights = images["width"].to_numpy(), images["height"].to_numpy()
    index, _ = nearest(features, candidates)
    pictures = (local_match.painting_of(local_match.grey_square(pixels[r]), int(w), int(h))
                for r, w, h in zip(rows, widths, heights, strict=True))
    kept = local_match.all_features(pictures, total=len(rows), progress=progress)
    found = local_match.verified(kept, neighbour_pairs(index), min_inliers, progress=progress)
    return [(ids[i], ids[j], "local", local_match.score(n)) for i, j, n in found]


def model_finder(near: NearCopyConfig, progress: bool = False) -> LinkFinder | None:
    """The `similar` callable for prepare covering the configured model detectors (None when neither is asked)."""
    wanted = {"embedding", "local"} & set(near.detectors)
    if not wanted:
        return None

    def find(images: pd.DataFrame, pixels: np.ndarray) -> list[Link]:
        features = embed_cached(pixels, images["cache_index"].to_numpy(), near.embedding_backbone, progress=progress)
        links: list[Link] = []
        if "embedding" in wanted:
            links += similar_pairs(images["image_id"].astype(str).tolist(), features, near.embedding_similarity)
        if "local" in wanted:
            links += local_links(images, pixels, features, near.local_candidates, near.local_inliers, progress)
        return links

    return find


def _feature_file(pixels: np.ndarray, rows: np.ndarray, backbone: str) -> Path | None:
    """Beside a memory-mapped cache (None for pixels in memory): keyed by the cache file, its rows and backbone."""
    name = getattr(pixels, "filename", None)
    if not name:
        return None
    path = Path(name)
    digest = hashlib.sha1(f"{path.name}|{path.stat().st_mtime_ns}|{backbone}|".encode()
                          + np.asarray(rows, dtype=np.int64).tobytes()).hexdigest()[:16]
    return path.parent / "features" / f"near-{backbone}-{digest}.npy"
