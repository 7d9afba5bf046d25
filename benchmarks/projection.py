"""The 2-D map at the full set's size: scikit-learn's t-SNE (the map before) against openTSNE's (the map now).

A run's map is `pipeline.evaluate.project_2d` over its test-and-train embeddings: PCA to 50 dims, then t-SNE.
scikit-learn's Barnes-Hut t-SNE took minutes per run at 33,600 images; openTSNE (FFT-accelerated gradients
from 10,000 points, Barnes-Hut below, approximate neighbours) is what `project_2d` runs now. Vectors are
realistic (`realistic`): the real efficientnet_lite0 features of the shared paintings cached under
artifacts/cache/features, topped up to n with jittered copies of them (or clustered synthetic ones on a fresh
clone with no cache). Quality beside the time, on the same vectors: kNN preservation (the share of each sampled
point's 10 nearest neighbours in the embedding that are among its 10 nearest on the map) and scikit-learn's
trustworthiness on a sample.

    .venv/bin/python -m benchmarks.projection [--full]     # quick: 4,000 points; --full: 33,600
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np

from benchmarks import common

NAME = "2-D map"
K = 10
FEATURES = Path("artifacts/cache/features")


@dataclasses.dataclass
class Settings:
    n: int
    sample: int  # query points for kNN preservation and trustworthiness


QUICK = Settings(n=4000, sample=1000)
FULL = Settings(n=33600, sample=2000)


def real_features() -> np.ndarray | None:
    """The largest cached feature file of real paintings (pooled backbone features), or None on a fresh clone."""
    files = sorted(FEATURES.glob("*.npy"), key=lambda p: p.stat().st_size, reverse=True) if FEATURES.is_dir() else []
    return np.load(files[0]).astype(np.float32) if files else None


def realistic(n: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """(n, dim) float32 vectors and a line saying what they are: the real cached features, with jittered copies
    of random real rows (noise at a third of each dimension's spread, kept non-negative as pooled ReLU features
    are) beyond them; clustered synthetic 1280-d vectors when no cache exists."""
    rng = np.random.default_rng(seed)
    real = real_features()
    if real is None:
        from benchmarks.nearest_neighbours import clustered

        return clustered(n, 1280, seed), f"{n:,} clustered synthetic 1280-d vectors (no feature cache found)"
    real = real[rng.permutation(len(real))[:n]]
    extra = n - len(real)
    if extra <= 0:
        return real, f"{n:,} real cached features ({real.shape[1]}-d)"
    anchors = real[rng.integers(0, len(real), extra)]
    jitter = rng.normal(size=anchors.shape).astype(np.float32) * (real.std(0) / 3)
    vectors = np.concatenate([real, np.maximum(anchors + jitter, 0)])
    return vectors, (f"{len(real):,} real cached features ({real.shape[1]}-d, efficientnet_lite0) + {extra:,} "
                     "jittered copies of them")


def neighbours(points: np.ndarray, queries: np.ndarray, k: int = K, cosine: bool = False) -> np.ndarray:
    """Indices of each query row's k nearest rows of `points` (Euclidean, or cosine), the query itself left out."""
    x = points.astype(np.float32)
    if cosine:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    out = np.empty((len(queries), k), np.int64)
    sq = (x * x).sum(1)
    for start in range(0, len(queries), 512):
        q = queries[start:start + 512]
        d = sq[None, :] - 2 * x[q] @ x.T  # + |q|^2, the same along a row
        d[np.arange(len(q)), q] = np.inf
        part = np.argpartition(d, k, axis=1)[:, :k]
        order = np.take_along_axis(d, part, 1).argsort(1)
        out[start:start + len(q)] = np.take_along_axis(part, order, 1)
    return out


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of a's neighbours (per row) that b also has, order aside."""
    return float(np.mean([len(set(x) & set(y)) / a.shape[1] for x, y in zip(a, b, strict=True)]))


def knn_preservation(vectors: np.ndarray, xy: np.ndarray, queries: np.ndarray) -> float:
    return overlap(neighbours(vectors, queries), neighbours(xy, queries))


def sklearn_tsne(vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    """The map as project_2d made it before openTSNE: PCA to 50, scikit-learn's Barnes-Hut t-SNE."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    reduced = PCA(n_components=50, random_state=seed).fit_transform(vectors)
    perplexity = float(min(30, (len(vectors) - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(reduced)


def run(quick: bool = True) -> list[dict]:
    from sklearn.manifold import trustworthiness

    from pipeline.evaluate import project_2d

    s = QUICK if quick else FULL
    vectors, what = realistic(s.n)
    queries = np.random.default_rng(1).choice(s.n, s.sample, replace=False)
    variants = {
        "scikit-learn t-SNE (Barnes-Hut; project_2d before)": lambda: sklearn_tsne(vectors),
        "openTSNE (FFT from 10,000 points; project_2d now)": lambda: project_2d(vectors, "tsne", 0),
        "PCA only (projection: pca)": lambda: project_2d(vectors, "pca", 0),
    }
    rows, seconds = [], {}
    for name, make in variants.items():
        load = common.load()
        t = time.perf_counter()
        xy = np.asarray(make(), np.float32)
        seconds[name] = time.perf_counter() - t
        rows.append([name, s.n, seconds[name], knn_preservation(vectors, xy, queries),
                     trustworthiness(vectors[queries], xy[queries], n_neighbors=K), load])
    before, now = list(seconds.values())[:2]
    for row in rows:
        row.insert(3, before / row[2])
    common.table(f"2-D map of {s.n:,} embeddings: {what}",
                 ["method", "points", "seconds", "speed vs scikit-learn", f"kNN preservation@{K}",
                  f"trustworthiness@{K} (sample {s.sample:,})", "1-min load before"],
                 rows, note=f"{os.cpu_count()} cores, shared with other work: load beside each row")
    return [common.result(NAME, f"scikit-learn t-SNE time / openTSNE time at {s.n:,} points", before / now, None,
                          "x", note="above 1: openTSNE faster")]


if __name__ == "__main__":
    common.standalone(run, __doc__, "33,600 points (the Historic Art set's size)")
