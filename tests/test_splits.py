"""Splits: exact counts, fractions, determinism, grouping (duplicates, artists), and the real WikiArt set."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest

from pipeline.config import ConfigError, DataConfig, SplitConfig
from pipeline.data.prepare import PreparedData, prepare
from pipeline.data.splits import assign_splits


def table(sizes: dict[str, int], artists_per_class: int = 1, copies: int = 1) -> pd.DataFrame:
    """Rows per class; `copies` rows share each content hash; artists cycle within a class."""
    rows = []
    for label, n in sizes.items():
        for i in range(n):
            rows.append({"image_id": f"{label}/{i:04d}", "path": f"/x/{label}/{i}.jpg", "period": label,
                         "artist": f"{label}-artist{i % artists_per_class}", "content_hash": f"{label}-{i // copies}"})
    return pd.DataFrame(rows)


def split_counts(df: pd.DataFrame) -> dict[tuple[str, str], int]:
    return df.groupby(["period", "split"]).size().to_dict()


def test_counts_mode_is_exact_per_class() -> None:
    df, skipped = assign_splits(table({"A": 50, "B": 13, "C": 200}), SplitConfig(mode="counts", val=5, test=7))
    counts = split_counts(df)
    for label, n in {"A": 50, "B": 13, "C": 200}.items():
        assert (counts[(label, "val")], counts[(label, "test")], counts[(label, "train")]) == (5, 7, n - 12)
    assert skipped == []


def test_counts_mode_skips_classes_too_small() -> None:
    df, skipped = assign_splits(table({"A": 30, "B": 4}), SplitConfig(mode="counts", val=2, test=2))
    assert set(df["period"]) == {"A"}
    assert len(skipped) == 4 and {s["stage"] for s in skipped} == {"split"}
    assert "'B' has 4 image(s)" in skipped[0]["reason"] and "= 5" in skipped[0]["reason"]


def test_fractions_mode_is_stratified() -> None:
    df, skipped = assign_splits(table({"A": 100, "B": 10, "C": 3, "D": 2}), SplitConfig(mode="fractions"))
    counts = split_counts(df)
    assert (counts[("A", "train")], counts[("A", "val")], counts[("A", "test")]) == (60, 20, 20)
    assert (counts[("B", "train")], counts[("B", "val")], counts[("B", "test")]) == (6, 2, 2)
    assert (counts[("C", "train")], counts[("C", "val")], counts[("C", "test")]) == (1, 1, 1)
    assert [s["reason"] for s in skipped] == ["class too small: 'D' has 2 image(s); fractions mode needs at least 3 "
                                              "(one per split)"] * 2


def test_splits_are_deterministic_and_independent_of_row_order() -> None:
    df = table({"A": 40, "B": 25}, copies=2)
    split = SplitConfig(mode="fractions", seed=7)
    first = assign_splits(df, split)[0].set_index("image_id")["split"]
    shuffled = assign_splits(df.sample(frac=1, random_state=3), split)[0].set_index("image_id")["split"]
    assert first.sort_index().equals(shuffled.sort_index())
    other_seed = assign_splits(df, SplitConfig(mode="fractions", seed=8))[0].set_index("image_id")["split"]
    assert not first.sort_index().equals(other_seed.sort_index())


def test_identical_files_stay_together() -> None:
    df, _ = assign_splits(table({"A": 60, "B": 60}, copies=3), SplitConfig(mode="counts", val=6, test=6))
    assert (df.groupby("content_hash")["split"].nunique() == 1).all()
    counts = split_counts(df)
    assert counts[("A", "val")] == 6 and counts[("A", "test")] == 6


def test_artist_disjoint_keeps_each_artist_in_one_split() -> None:
    df, skipped = assign_splits(table({"A": 120, "B": 90, "C": 60}, artists_per_class=6),
                                SplitConfig(mode="fractions", artist_disjoint=True))
    assert (df.groupby("artist")["split"].nunique() == 1).all()
    assert skipped == []
    for label in "ABC":  # approximate shares, but every split has some of every class
        assert set(df.loc[df["period"] == label, "split"]) == {"train", "val", "test"}


@pytest.mark.parametrize("split", [SplitConfig(mode="counts", val=0.2, test=0.2),
                                   SplitConfig(mode="fractions", val=0.6, test=0.5), SplitConfig(mode="thirds")])
def test_unusable_split_settings_raise(split: SplitConfig) -> None:
    with pytest.raises(ConfigError, match="not usable"):
        assign_splits(table({"A": 10}), split)


@pytest.fixture(scope="session")
def wikiart(shared_datasets: Path, tmp_path_factory: pytest.TempPathFactory) -> PreparedData:
    """The real 7,000-image set, prepared once per session at a small size (decoding is the cost)."""
    cfg = DataConfig(source="imagefolder", path=str(shared_datasets / "wikiart-styles"), resize=64, crop=56,
                     split=SplitConfig(mode="fractions", val=0.2, test=0.2))
    return prepare(cfg, tmp_path_factory.mktemp("wikiart-cache"), progress=False)


@pytest.mark.slow
def test_wikiart_duplicates_never_straddle_splits(wikiart: PreparedData, shared_datasets: Path) -> None:
    root = shared_datasets / "wikiart-styles"
    by_hash = defaultdict(list)  # measured independently of the pipeline's dedup
    for path in sorted(root.rglob("*.jpg")):
        by_hash[hashlib.sha1(path.read_bytes()).hexdigest()].append(path.relative_to(root).as_posix())
    groups = {h: ids for h, ids in by_hash.items() if len(ids) > 1}
    conflicting = {h for h, ids in groups.items() if len({i.split("/")[0] for i in ids}) > 1}

    assert len(groups) == 53 and all(len(ids) == 2 for ids in groups.values())  # 53 pairs, as the README says
    report = wikiart.duplicates
    assert report["content_hash"].nunique() == len(groups) and len(report) == 2 * len(groups)
    assert set(report.loc[report["conflict"], "content_hash"]) == conflicting

    images = wikiart.images.set_index("image_id")
    excluded = {i for h in conflicting for i in groups[h]}
    assert not excluded & set(images.index)
    dup_skips = wikiart.skipped[wikiart.skipped["stage"] == "duplicate"]
    assert len(dup_skips) == len(excluded) and dup_skips["reason"].str.contains("conflicting duplicate").all()
    for h, ids in groups.items():
        if h not in conflicting:
            assert images.loc[ids, "split"].nunique() == 1, ids
    assert len(images) == 7000 - len(excluded)
    assert wikiart.periods == ["Baroque", "Romanticism", "Impressionism", "Post-Impressionism", "Symbolism",
                               "Art_Nouveau", "Expressionism"]
    shares = images["split"].value_counts(normalize=True)
    assert abs(shares["test"] - 0.2) < 0.01 and abs(shares["val"] - 0.2) < 0.01
