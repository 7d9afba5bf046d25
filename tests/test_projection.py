"""The 2-D map (pipeline.evaluate.project_2d): one seed gives one map, tiny sets fall back to PCA, t-SNE keeps
neighbourhoods."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.evaluate import project_2d


def blobs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    centres = rng.normal(scale=8, size=(4, 32))
    return (centres[labels] + rng.normal(size=(n, 32))).astype(np.float32), labels


def test_one_seed_one_map_and_another_seed_another():
    x, _ = blobs(120)
    a, b, c = project_2d(x, "tsne", 3), project_2d(x, "tsne", 3), project_2d(x, "tsne", 4)
    assert a.shape == (120, 2) and a.dtype == np.float32 and np.isfinite(a).all()
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_clusters_stay_together_on_the_map():
    x, labels = blobs(200)
    xy = project_2d(x, "tsne", 0)
    d = np.linalg.norm(xy[:, None] - xy[None], axis=2)
    np.fill_diagonal(d, np.inf)
    assert (labels[d.argmin(1)] == labels).mean() > 0.95


@pytest.mark.parametrize("n", [0, 1, 2, 3, 9, 10])
def test_tiny_sets(n):
    x, _ = blobs(max(n, 1))
    xy = project_2d(x[:n], "tsne", 0)
    assert xy.shape == (n, 2) and xy.dtype == np.float32 and np.isfinite(xy).all()
    assert np.array_equal(xy, project_2d(x[:n], "tsne", 0))


def test_pca_projection_is_the_first_two_components():
    x, _ = blobs(50)
    xy = project_2d(x, "pca", 0)
    centred = x - x.mean(0)
    top = np.linalg.svd(centred, full_matrices=False)[2][0]
    assert abs(abs(np.corrcoef(xy[:, 0], centred @ top)[0, 1]) - 1) < 1e-4
