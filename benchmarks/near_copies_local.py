"""Details by local features: ORB keypoints + RANSAC on the near-copy labelled set (a measurement, not the pipeline).

The same labelled set as benchmarks/near_copies.py (its generator and seed: originals, re-encodes, resizes,
details, colour shifts, negatives), each image read at 256 px on the long side in grey. Per image: ORB keypoints
and binary descriptors (scikit-image); per candidate pair: cross-checked Hamming matches with a ratio test, then
RANSAC with a similarity transform; a pair is a link when its inlier count >= T. Candidate pairs: every copy
against every original, and every negative against every original of its style (so false links can appear).
Recall = share of copies of a kind linked to their original; precision = share of links joining one work's images.

    .venv/bin/python -m benchmarks.near_copies_local [--full]
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd
from PIL import Image
from skimage.feature import ORB, match_descriptors
from skimage.measure import ransac
from skimage.transform import SimilarityTransform

from benchmarks import common
from benchmarks.near_copies import FULL, KINDS, QUICK, write_labelled_set

NAME = "near copies, local features"
SIDE = 256  # long side the images are read at
THRESHOLDS = (6, 8, 10, 12, 15, 20, 30)
TOP_K = 10  # candidates per image in practice (e.g. top-k by embedding cosine)


def grey(path) -> np.ndarray:
    img = Image.open(path).convert("L")
    img.thumbnail((SIDE, SIDE), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float64) / 255.0


def orb_features(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(keypoints as x, y; descriptors); empty arrays where ORB finds too few corners."""
    orb = ORB(n_keypoints=500, fast_threshold=0.05)
    try:
        orb.detect_and_extract(img)
    except RuntimeError:
        return np.zeros((0, 2)), np.zeros((0, 256), dtype=bool)
    return orb.keypoints[:, ::-1].copy(), orb.descriptors


def inliers(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], rng: np.random.Generator) -> int:
    """RANSAC inliers of a similarity transform between two images' matched keypoints."""
    if len(a[1]) < 3 or len(b[1]) < 3:
        return 0
    matches = match_descriptors(a[1], b[1], cross_check=True, max_ratio=0.8)
    if len(matches) < 3:
        return 0
    src, dst = a[0][matches[:, 0]], b[0][matches[:, 1]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, mask = ransac((src, dst), SimilarityTransform, min_samples=2, residual_threshold=3.0,
                             max_trials=300, rng=rng)
    return 0 if model is None or mask is None else int(mask.sum())


def run(quick: bool = True) -> list[dict]:
    s = QUICK if quick else FULL
    root = common.REPO / "artifacts" / "bench-near" / ("quick" if quick else "full")
    truth_file = root / "truth.csv"
    if not truth_file.exists():  # the same set as benchmarks/near_copies.py writes (same generator and seed)
        truth = write_labelled_set(common.paintings_root(), root / "images", s.originals, s.negatives, s.per_kind)
        truth.to_csv(truth_file, index=False)
    truth = pd.read_csv(truth_file)
    truth["style"] = truth["work"].str.split("/").str[0]

    t = time.perf_counter()
    feats = [orb_features(grey(root / "images" / i)) for i in truth["image_id"]]
    t_features = time.perf_counter() - t

    originals = truth[truth["kind"] == "original"]
    pairs = []
    for n, row in truth.iterrows():
        if row["kind"] in KINDS:
            pairs += [(n, m) for m in originals.index]
        elif row["kind"] == "negative":
            pairs += [(n, m) for m in originals.index[originals["style"] == row["style"]]]
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    counts = np.array([inliers(feats[a], feats[b], rng) for a, b in pairs])
    t_pairs = time.perf_counter() - t

    work, kind = truth["work"].to_numpy(), truth["kind"].to_numpy()
    a, b = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    same = work[a] == work[b]
    rows = []
    for th in THRESHOLDS:
        linked = counts >= th
        row = [f">= {th}", float(same[linked].mean()) if linked.any() else 1.0, int((linked & ~same).sum())]
        row += [float(linked[same & (kind[a] == k)].mean()) for k in KINDS]
        rows.append(row)
    n_kind = truth["kind"].value_counts().to_dict()
    common.table(f"ORB + RANSAC (similarity) on {len(truth)} real-painting images ({n_kind}), {SIDE} px, "
                 f"{len(pairs)} candidate pairs", ["inliers", "precision", "false links", *KINDS], rows)
    true_counts = pd.Series(counts[same]).groupby(kind[a][same]).median().to_dict()
    print(f"median inliers of true pairs per kind: {true_counts}; "
          f"false pairs: 99th pct {np.percentile(counts[~same], 99):.0f}, max {counts[~same].max()}\n")
    per_image, per_pair = t_features / len(truth), t_pairs / len(pairs)
    common.table("Time", ["step", "seconds"], [
        ["ORB features per image", per_image], ["match + RANSAC per pair", per_pair],
        [f"per 1,000 images, top-{TOP_K} candidates each", 1000 * (per_image + TOP_K * per_pair)],
        ["per 1,000 images, all pairs", 1000 * per_image + 1000 * 999 / 2 * per_pair]])
    return [common.result(NAME, "detail recall at the lowest threshold with precision 1.0",
                          max((r[3 + KINDS.index("detail")] for r in rows if r[1] >= 1.0), default=0.0),
                          None, "share")]


if __name__ == "__main__":
    common.standalone(run, __doc__, "20 originals per style, 2 copies of each kind, 140 negatives per style")
