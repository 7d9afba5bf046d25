"""What the painter's identity gives away: val/test accuracy on images whose artist was in training (seen) and on
the others (unseen), checked by hand against the stored predictions and images; artist-disjoint splits and the
configs that ask for them."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pipeline.artist_seen import artist_seen_for_runs, artist_seen_rows
from pipeline.config import REPO_ROOT, ConfigError, SplitConfig, load_experiment
from pipeline.data.splits import assign_splits
from pipeline.intervals import wilson
from tests.conftest import TINY_EXPERIMENT, make_experiment

NAMES = ["accuracy_artist_seen", "accuracy_artist_unseen", "n_artist_seen", "n_artist_unseen"]
PERIOD_PREDICTIONS = """
    SELECT p.run_id, p.split, p.correct, i.artist
    FROM predictions p JOIN runs r USING (run_id)
    JOIN images i ON i.dataset_id = r.dataset_id AND i.image_id = p.image_id
    WHERE p.task = 'period'"""


def stored_rows(store: Path) -> pd.DataFrame:
    with duckdb.connect(str(store), read_only=True) as con:
        return con.execute("SELECT run_id, split, metric, value, low, high FROM metrics WHERE metric IN "
                           "(SELECT unnest(?)) AND task = 'period' AND label IS NULL", [NAMES]).df()


def hand_computed(store: Path) -> dict[tuple[str, str, str], float]:
    """(run, split, metric) -> value, from the predictions and images tables with plain pandas."""
    with duckdb.connect(str(store), read_only=True) as con:
        df = con.execute(PERIOD_PREDICTIONS).df()
    out = {}
    for run_id, run in df.groupby("run_id"):
        trained_on = set(run.loc[run["split"] == "train", "artist"])
        for split in ("val", "test"):
            part = run[(run["split"] == split) & run["correct"].notna()]
            for side, rows in (("seen", part[part["artist"].isin(trained_on)]),
                               ("unseen", part[~part["artist"].isin(trained_on)])):
                out[(run_id, split, f"n_artist_{side}")] = float(len(rows))
                if len(rows):
                    out[(run_id, split, f"accuracy_artist_{side}")] = rows["correct"].astype(bool).mean()
    return out


def test_wilson_matches_the_published_value() -> None:
    """8 of 10: 0.4902 to 0.9433, worked by hand from the score formula (z = 1.96)."""
    low, high = wilson(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    assert wilson(0, 5)[0] == 0.0 and math.isnan(wilson(0, 0)[0])


def test_a_mixed_frame_splits_into_seen_and_unseen() -> None:
    frame = pd.DataFrame([
        ("train", "A", True), ("train", "B", False),
        ("test", "A", True), ("test", "B", False), ("test", "A", True),  # seen: 2 of 3
        ("test", "C", True), ("test", "D", False), ("test", None, True),  # unseen: 1 of 2; no artist: neither
        ("test", "C", None),  # no period label: neither
        ("val", "A", False),  # seen: 0 of 1; no unseen
    ], columns=["split", "artist", "correct"])
    rows = {(r[1], r[3]): r for r in artist_seen_rows("run", frame)}
    assert rows[("test", "n_artist_seen")][5] == 3 and rows[("test", "n_artist_unseen")][5] == 2
    assert rows[("test", "accuracy_artist_seen")][5:] == (2 / 3, *wilson(2, 3))
    assert rows[("test", "accuracy_artist_unseen")][5:] == (0.5, *wilson(1, 2))
    assert rows[("val", "accuracy_artist_seen")][5] == 0.0 and rows[("val", "n_artist_unseen")][5] == 0
    assert ("val", "accuracy_artist_unseen") not in rows  # nothing to measure: no row, rather than a made-up 0
    assert all(r[2] == "period" and r[4] is None for r in rows.values())
    assert rows[("test", "n_artist_seen")][6:] == (None, None)


def test_no_rows_without_artists_or_without_a_training_split() -> None:
    no_artists = pd.DataFrame({"split": ["train", "test"], "artist": [None, None], "correct": [True, False]})
    collection = pd.DataFrame({"split": ["test", "test"], "artist": ["A", "B"], "correct": [True, False]})
    assert artist_seen_rows("r", no_artists) == [] and artist_seen_rows("r", collection) == []


def test_too_few_painters_for_an_artist_disjoint_split_is_one_clear_error() -> None:
    """The reference subset's shape: every period two painters, which cannot fill train, val and test."""
    rows = [{"image_id": f"{p}/{a}/{i}", "path": f"/x/{p}{a}{i}.jpg", "period": p, "artist": f"{p}-{a}",
             "content_hash": f"{p}{a}{i}"} for p in ("Baroque", "Medieval") for a in range(2) for i in range(60)]
    with pytest.raises(ConfigError, match=r"artist-disjoint split impossible: 'Baroque' has 2 painter\(s\), so test "
                       r"would get none of its images; it needs 3"):
        assign_splits(pd.DataFrame(rows), SplitConfig(mode="counts", val=30, test=30, artist_disjoint=True))
    df, _ = assign_splits(pd.DataFrame(rows), SplitConfig(mode="counts", val=0, test=30, artist_disjoint=True))
    assert set(df["split"]) == {"train", "test"}  # no validation asked for: two painters suffice


@pytest.mark.parametrize(("variant", "base"), [("demo-artists-apart", "demo"),
                                               ("reference-full-artists-apart", "reference-full")])
def test_the_artist_disjoint_configs_load_and_differ_only_in_the_split(variant: str, base: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HISTORIC_ART", "/data/historic-art")
    apart, shared = (load_experiment(REPO_ROOT / "configs" / f"{name}.yaml") for name in (variant, base))
    assert apart.data.split.artist_disjoint and not shared.data.split.artist_disjoint
    assert apart.data.split.mode == shared.data.split.mode
    assert (apart.data.source, apart.data.resize, apart.data.crop) == (shared.data.source, shared.data.resize,
                                                                       shared.data.crop)
    base_runs = {r.name: r for r in shared.runs}
    for run in apart.runs:  # each run is the base's run of that name, on the other split
        twin = base_runs[run.name]
        assert (run.model, run.freezing, run.optim, run.loop.epochs) == (twin.model, twin.freezing, twin.optim,
                                                                         twin.loop.epochs)


@pytest.mark.slow
def test_shared_painters_demo_every_test_painter_seen(demo_store: Path) -> None:
    """The demo split shares painters: every val/test image's artist is in training, and the stored seen accuracy
    is the hand computation's (every run, both heads' period task)."""
    stored = stored_rows(demo_store)
    expected = hand_computed(demo_store)
    assert len(stored) == len(expected) > 0
    for r in stored.itertuples():
        assert r.value == pytest.approx(expected[(r.run_id, r.split, r.metric)]), (r.run_id, r.split, r.metric)
        if r.metric.startswith("accuracy"):
            assert r.low <= r.value <= r.high
    assert set(stored.loc[stored["metric"] == "n_artist_unseen", "value"]) == {0.0}
    assert "accuracy_artist_unseen" not in set(stored["metric"])
    with duckdb.connect(str(demo_store), read_only=True) as con:
        accuracy = con.execute("SELECT run_id, split, value FROM metrics WHERE metric = 'accuracy' AND task = 'period'"
                               " AND split IN ('val', 'test')").df()
    seen = stored[stored["metric"] == "accuracy_artist_seen"].merge(accuracy, on=["run_id", "split"])
    assert len(seen) == len(accuracy) and (seen["value_x"] - seen["value_y"]).abs().max() < 1e-9


@pytest.mark.slow
def test_backfill_of_older_stores_gives_the_stored_rows(demo_store: Path) -> None:
    with duckdb.connect(str(demo_store), read_only=True) as con:
        filled = artist_seen_for_runs(con.execute(PERIOD_PREDICTIONS).df())
    key = ["run_id", "split", "metric"]
    both = filled.merge(stored_rows(demo_store), on=key, suffixes=("", "_stored"))
    assert len(both) == len(filled) == len(stored_rows(demo_store))
    assert (both["value"] - both["value_stored"]).abs().max() < 1e-9


@pytest.mark.slow
def test_artist_disjoint_demo_run_has_only_unseen_painters(tmp_path: Path) -> None:
    from pipeline.experiment import run_experiment

    spec = {**TINY_EXPERIMENT, "name": "tiny-apart", "attributions": {"enabled": False},
            "data": {**TINY_EXPERIMENT["data"],
                     "split": {**TINY_EXPERIMENT["data"]["split"], "artist_disjoint": True}},
            "runs": [{"name": "head", "strategy": "head"}]}
    exp = make_experiment(tmp_path, spec)
    run_experiment(exp, progress=False)
    with duckdb.connect(exp.store, read_only=True) as con:
        artists = con.execute("SELECT split, list(DISTINCT artist) FROM images GROUP BY split").fetchall()
    by_split = {split: set(names) for split, names in artists}
    assert by_split.keys() == {"train", "val", "test"}
    assert not by_split["train"] & (by_split["val"] | by_split["test"]) and not by_split["val"] & by_split["test"]
    stored = stored_rows(Path(exp.store))
    expected = hand_computed(Path(exp.store))
    assert {(r.run_id, r.split, r.metric): r.value for r in stored.itertuples()} == pytest.approx(expected)
    assert set(stored.loc[stored["metric"] == "n_artist_seen", "value"]) == {0.0}
    assert (stored.loc[stored["metric"] == "n_artist_unseen", "value"] >= 5 * 40).all()  # a painter per period
