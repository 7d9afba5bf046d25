"""Details by local features, as the pipeline's `local` near-copy detector finds them: embedding top-k candidates,
then ORB keypoints + RANSAC (pipeline/local_match.py) on the decoded cache.

The same labelled set as benchmarks/near_copies.py (its generator and seed: originals, re-encodes, resizes,
details, colour shifts, negatives), prepared as the pipeline does (cache at 160 px). First, recall@k of the
candidate step: the share of copies of each kind whose original is among its k most cosine-similar images
(efficientnet_lite0 pooled features) over the whole set, or it among the original's (the pipeline takes both).
Then the detector at k = NearCopyConfig.local_candidates: every candidate pair's RANSAC inliers (similarity
transform) on the cached squares without their bars; a pair is a link when inliers >= T. Recall = share of copies
of a kind linked to their original; precision = share of links joining one work's images; and the time per 1,000
images of the keypoint and matching steps (the embedding pass is benchmarks/near_copies.py's).

    .venv/bin/python -m benchmarks.near_copies_local [--full]
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from benchmarks import common
from benchmarks.near_copies import FULL, KINDS, QUICK, prepared, write_labelled_set
from pipeline import local_match
from pipeline.config import NearCopyConfig
from pipeline.data.near_copies import nearest, neighbour_pairs
from pipeline.similar_images import embed_cached

NAME = "near copies, local features"
THRESHOLDS = (4, 6, 8, 10, 12, 15, 20, 30)
TOP_K = (5, 10, 20)
CANDIDATES = NearCopyConfig.local_candidates


def recall_at_k(index: np.ndarray, images: pd.DataFrame) -> list[list[object]]:
    """Per k and kind: share of copies with their original among their k neighbours (or they among its)."""
    original = {w: n for n, (w, k) in enumerate(zip(images["work"], images["kind"], strict=True)) if k == "original"}
    rows = []
    for k in TOP_K:
        row: list[object] = [k]
        for kind in KINDS:
            copies = np.flatnonzero((images["kind"] == kind).to_numpy())
            found = [original[images["work"].iat[i]] in index[i, :k] or i in index[original[images["work"].iat[i]], :k]
                     for i in copies]
            row.append(float(np.mean(found)))
        rows.append(row)
    return rows


def run(quick: bool = True) -> list[dict]:
    s = QUICK if quick else FULL
    root = common.REPO / "artifacts" / "bench-near" / ("quick" if quick else "full")
    truth_file = root / "truth.csv"
    if not truth_file.exists():  # the same set as benchmarks/near_copies.py writes (same generator and seed)
        truth = write_labelled_set(common.paintings_root(), root / "images", s.originals, s.negatives, s.per_kind)
        truth.to_csv(truth_file, index=False)
    truth = pd.read_csv(truth_file)
    data = prepared(root / "images")
    images = data.images.merge(truth, on="image_id").reset_index(drop=True)
    features = embed_cached(data.pixels, images["cache_index"].to_numpy())
    n_kind = images["kind"].value_counts().to_dict()

    t = time.perf_counter()
    index, _ = nearest(features, max(TOP_K))
    t_neighbours = time.perf_counter() - t
    common.table(f"Recall@k of embedding candidates on {len(images)} real-painting images ({n_kind})",
                 ["k", *KINDS], recall_at_k(index, images))

    pairs = neighbour_pairs(index[:, :CANDIDATES])
    t = time.perf_counter()
    pictures = (local_match.painting_of(local_match.grey_square(data.pixels[r]), int(w), int(h))
                for r, w, h in zip(images["cache_index"], images["width"], images["height"], strict=True))
    kept = local_match.all_features(pictures, total=len(images))
    t_features = time.perf_counter() - t
    t = time.perf_counter()
    found = local_match.verified(kept, pairs, min_inliers=0)
    t_pairs = time.perf_counter() - t

    a, b, counts = (np.array(c) for c in zip(*found, strict=True))
    work, kind = images["work"].to_numpy(), images["kind"].to_numpy()
    same = work[a] == work[b]
    original = {w: n for n, (w, k) in enumerate(zip(work, kind, strict=True)) if k == "original"}
    inliers = {(min(i, j), max(i, j)): c for i, j, c in found}

    def pair_of(i: int) -> tuple[int, int]:
        o = original[work[i]]
        return (min(i, o), max(i, o))

    rows: list[list] = []
    for th in THRESHOLDS:
        linked = counts >= th
        row: list = [f">= {th}", float(same[linked].mean()) if linked.any() else 1.0,
                             int((linked & ~same).sum())]
        for k in KINDS:
            copies = np.flatnonzero(kind == k)
            row.append(float(np.mean([inliers.get(pair_of(int(i)), 0) >= th for i in copies])))
        rows.append(row)
    common.table(f"The local detector: top-{CANDIDATES} candidates ({len(pairs)} pairs), ORB + RANSAC on the "
                 f"{data.pixels.shape[1]} px cache", ["inliers", "precision", "false links", *KINDS], rows)
    copy_kind = np.where(kind[a] == "original", kind[b], kind[a])
    true_counts = pd.Series(counts[same]).groupby(copy_kind[same]).median().to_dict()
    print(f"median inliers of true pairs per kind: {true_counts}; false pairs: "
          f"99th pct {np.percentile(counts[~same], 99):.0f}, max {counts[~same].max()}\n")
    n = len(images)
    per_1000 = 1000 * (t_neighbours + t_features + t_pairs) / n
    common.table("Time", ["step", "seconds"], [
        [f"top-{max(TOP_K)} neighbours, all images", t_neighbours], ["ORB keypoints per image", t_features / n],
        ["match + RANSAC per pair", t_pairs / len(pairs)],
        [f"local detector per 1,000 images (top-{CANDIDATES}, no embedding pass)", per_1000]])
    chosen = rows[THRESHOLDS.index(NearCopyConfig.local_inliers)]
    return [common.result(NAME, f"detail recall at >= {NearCopyConfig.local_inliers} inliers, top-{CANDIDATES}",
                          float(chosen[3 + KINDS.index("detail")]), None, "share",
                          note=f"precision {chosen[1]:.3f}; {per_1000:.0f} s per 1,000 images")]


if __name__ == "__main__":
    common.standalone(run, __doc__, "20 originals per style, 2 copies of each kind, 140 negatives per style")
