"""The `local` near-copy detector (embedding candidates, ORB + RANSAC) on real paintings: details join their work,
distinct paintings stay apart, and the neighbour search it uses is exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.near_copies import RESIZE, make_copy, painting_box, write_labelled_set
from pipeline import local_match
from pipeline.config import DataConfig, NearCopyConfig, SplitConfig
from pipeline.data.near_copies import nearest, neighbour_pairs
from pipeline.data.prepare import prepare
from pipeline.similar_images import model_finder


def test_nearest_matches_a_full_sort_and_pairs_are_unordered_and_unique():
    rng = np.random.default_rng(0)
    v = np.abs(rng.normal(size=(300, 16))).astype(np.float32)
    index, sim = nearest(v, 5, chunk=64)
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    full = unit @ unit.T
    np.fill_diagonal(full, -np.inf)
    assert (index == np.argsort(-full, axis=1, kind="stable")[:, :5]).all()
    assert np.allclose(sim, np.take_along_axis(full, index, axis=1))
    pairs = neighbour_pairs(index)
    assert all(i < j for i, j in pairs) and len(set(pairs)) == len(pairs)
    assert (3, int(index[3, 0])) in pairs or (int(index[3, 0]), 3) in pairs
    assert nearest(v[:1], 5)[0].shape == (1, 0)  # one image has no neighbours


def test_a_detail_matches_its_painting_and_not_another(shared_datasets: Path):
    files = sorted((shared_datasets / "wikiart-styles" / "Baroque").glob("*.jpg"))[:2]
    work, other = (painting_box(Image.open(f).convert("RGB")) for f in files)
    detail, _ = make_copy(work, "detail", np.random.default_rng(1))
    features = [local_match.orb_features(local_match.grey(img)) for img in (work, detail, other)]
    rng = np.random.default_rng(0)
    assert local_match.inliers(features[1], features[0], rng) >= NearCopyConfig.local_inliers
    assert local_match.inliers(features[1], features[2], rng) < NearCopyConfig.local_inliers
    assert features[0][1].dtype == np.uint8 and features[0][1].shape[1] == 32  # packed: 32 bytes a keypoint
    assert local_match.score(50) == 0.5 and local_match.score(400) == 1.0


@pytest.mark.slow
def test_local_detector_keeps_every_detail_with_its_work_and_links_no_negative(shared_datasets: Path, tmp_path):
    root = tmp_path / "images"
    truth = write_labelled_set(shared_datasets / "wikiart-styles", root, originals=2, negatives=6, per_kind=1, seed=3)
    truth = truth[truth["kind"].isin(["original", "detail", "negative"])]
    for path in root.rglob("*.jpg"):  # only originals, their details and negatives
        if path.relative_to(root).as_posix() not in set(truth["image_id"]):
            path.unlink()
    near = NearCopyConfig(detectors=["local"])
    cfg = DataConfig(source="imagefolder", path=str(root), resize=RESIZE, crop=RESIZE - 16, thumbnail_size=32,
                     split=SplitConfig(mode="fractions", val=0.3, test=0.3, seed=1), near_copies=near)
    data = prepare(cfg, tmp_path / "cache", progress=False, similar=model_finder(near))
    images = data.images.merge(truth, on="image_id")
    assert len(images) == len(truth)
    groups = data.near_copies.merge(truth, on="image_id")
    assert set(groups["kind_x"]) == {"local"}
    assert not (groups["kind_y"] == "negative").any()  # no distinct painting is linked
    works = images[images["kind"] != "negative"]
    by_work = groups[groups["kind_y"] != "negative"].groupby("work")["group_id"]
    assert by_work.nunique().eq(1).all() and by_work.size().eq(2).all()  # each detail with its own work
    assert set(by_work.size().index) == set(works["work"])  # every detail found
    assert works.groupby("work")["split"].nunique().eq(1).all()
    assert (works.groupby("work")["split"].first() != "train").any()  # some works are held out: the check bites
