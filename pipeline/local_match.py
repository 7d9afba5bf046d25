"""Local-feature matching of two pictures (ORB keypoints + RANSAC): finds a detail inside its whole work.

A crop of 30-70 % of a painting is, as a whole image, no closer to it than other paintings of its style are
(BENCHMARKS.md, "Near-copies and details"), but its corners and their binary descriptors reappear in the painting
at one scale and offset. Per image: ORB (scikit-image) on a grey picture of at most `SIDE` px; per pair:
cross-checked Hamming matches with a ratio test, then RANSAC with a similarity transform. The count of inliers
is the evidence: distinct paintings of one style reach 6 at most, a detail ~110 (benchmarks/near_copies_local.py).
Descriptors are kept packed (32 bytes per keypoint, ~16 KB an image), so a pass holds no decoded images.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image
from skimage.feature import ORB, match_descriptors
from skimage.measure import ransac
from skimage.transform import SimilarityTransform
from tqdm import tqdm

SIDE = 256  # long side ORB sees (the measured setting)
N_KEYPOINTS = 500
SATURATION = 100  # inliers at which a link's score reaches 1 (a detail's median is ~110)
Features = tuple[np.ndarray, np.ndarray]  # keypoints (n, 2) as x, y; descriptors (n, 32) packed bits


def grey(img: Image.Image, side: int = SIDE) -> np.ndarray:
    """A float grey picture whose long side is at most `side` (never enlarged)."""
    small = img.convert("L")
    small.thumbnail((side, side), Image.Resampling.BILINEAR)
    return np.asarray(small, dtype=np.float64) / 255.0


def grey_square(square: np.ndarray) -> np.ndarray:
    """A cached RGB uint8 square as float grey in [0, 1] (ITU-R 601 weights, as PIL's "L")."""
    rgb = np.asarray(square, dtype=np.float32)
    return (rgb @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.float64) / 255.0


def painting_of(square: np.ndarray, width: int, height: int) -> np.ndarray:
    """The painting inside a cached square, without the black bars pad_resize added (their straight edges would
    give every pair of paintings of one shape a few shared corners)."""
    size = square.shape[0]
    scale = size / max(width, height)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    x, y = (size - w) // 2, (size - h) // 2
    return np.asarray(square[y:y + h, x:x + w])


def orb_features(img: np.ndarray) -> Features:
    """Keypoints and packed descriptors of a grey picture; empty where ORB finds too few corners."""
    orb = ORB(n_keypoints=N_KEYPOINTS, fast_threshold=0.05)
    try:
        orb.detect_and_extract(img)
    except (RuntimeError, ValueError):  # too few corners, or a picture too small for ORB's pyramid
        return np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)
    keypoints, descriptors = np.asarray(orb.keypoints), np.asarray(orb.descriptors, dtype=bool)
    return keypoints[:, ::-1].astype(np.float32), np.packbits(descriptors, axis=1)


def inliers(a: Features, b: Features, rng: np.random.Generator) -> int:
    """RANSAC inliers of a similarity transform between two pictures' matched keypoints."""
    if len(a[1]) < 3 or len(b[1]) < 3:
        return 0
    da, db = np.unpackbits(a[1], axis=1).astype(bool), np.unpackbits(b[1], axis=1).astype(bool)
    matches = match_descriptors(da, db, cross_check=True, max_ratio=0.8)
    if len(matches) < 3:
        return 0
    src, dst = a[0][matches[:, 0]].astype(np.float64), b[0][matches[:, 1]].astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, mask = ransac((src, dst), SimilarityTransform, min_samples=2, residual_threshold=3.0,
                             max_trials=300, rng=rng)
    return 0 if model is None or mask is None else int(mask.sum())


def score(count: int) -> float:
    """A link's score in [0, 1]: inliers / SATURATION, capped."""
    return min(1.0, count / SATURATION)


def all_features(pictures: Iterable[np.ndarray], total: int | None = None, progress: bool = False
                 ) -> list[Features]:
    """ORB features of each picture, one at a time (pictures may be a generator over a cache)."""
    return [orb_features(p) for p in tqdm(pictures, total=total, desc="ORB keypoints (near-copies)",
                                          disable=not progress)]


def verified(features: Sequence[Features], pairs: Iterable[tuple[int, int]], min_inliers: int, seed: int = 0,
             progress: bool = False) -> list[tuple[int, int, int]]:
    """(i, j, inliers) for each candidate pair with at least `min_inliers` (RANSAC seeded: the same links each run)."""
    pairs = list(pairs)
    rng = np.random.default_rng(seed)
    out = []
    for i, j in tqdm(pairs, desc="match + RANSAC (near-copies)", disable=not progress):
        n = inliers(features[i], features[j], rng)
        if n >= min_inliers:
            out.append((i, j, n))
    return out
