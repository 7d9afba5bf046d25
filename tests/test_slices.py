"""Slices: accuracy per slice with its Wilson interval (SQL) against a hand computation in pandas, the date parser on
real-looking dates, the slice finder's minimum size, the Errors gallery filtered to a slice, and saved slices
(pipeline/slices.py) reopened by URL."""

from __future__ import annotations

import math
import re

import duckdb
import pandas as pd
import pytest

from dashboard.queries import gallery
from dashboard.queries import slices as q
from pipeline import slices as writer
from pipeline import store
from tests.conftest import copy_store, open_dashboard

Z = 1.959963984540054


def wilson(k: int, n: int) -> tuple[float, float]:
    """The Wilson score interval, written out by hand."""
    p = k / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def test_wilson_sql_matches_the_formula_and_a_known_value():
    low, high = q.wilson("k", "n")
    with duckdb.connect() as con:
        rows = con.execute(f"SELECT {low}, {high} FROM (VALUES (0, 7), (7, 7), (130, 180), (0, 0)) t(k, n)").fetchall()
    assert rows[0] == pytest.approx((0.0, 0.35433), abs=1e-5)  # 0 of 7: the textbook value
    assert rows[1] == pytest.approx((0.64567, 1.0), abs=1e-5)
    assert rows[2] == pytest.approx(wilson(130, 180))
    assert rows[3] == (None, None)


DATES = {"1574-88": "1550–1599", "c. 1500": "1500–1549", "1650s": "1650–1699", "1649": "1600–1649",
         "before 1510": "1500–1549", "1620-1625": "1600–1649", "c. 1899-1902": "1850–1899", "-": q.NO_DATE,
         "": q.NO_DATE, "15th century": q.NO_DATE, None: q.NO_DATE}


def test_dates_are_bucketed_by_their_first_four_digit_year():
    with duckdb.connect() as con:
        con.execute("CREATE TABLE i (date TEXT)")
        con.executemany("INSERT INTO i VALUES (?)", [[d] for d in DATES])
        got = dict(con.execute(f"SELECT date, {q.DIMENSIONS['date'][1]} FROM i").fetchall())
    assert got == DATES


# -- a small store written directly (no model): known predictions, so the finder's choices are known


def small_store(path) -> str:
    """One run over 60 test images: artist A (40 images, 30 right), B (15, 3 right), C (5, none right)."""
    with store.connect(path) as con:
        con.execute("INSERT INTO runs (run_id, dataset_id) VALUES ('r1', 'd1')")
        rows = [("A", 40, 30), ("B", 15, 3), ("C", 5, 0)]
        n = 0
        for artist, size, right in rows:
            for j in range(size):
                image = f"img{n:03d}"
                con.execute("INSERT INTO images (dataset_id, image_id, period, artist, date, split, content_hash, "
                            "width, height) VALUES ('d1', ?, 'P', ?, '1600', 'test', ?, 100, 100)",
                            [image, artist, image])
                con.execute("INSERT INTO predictions (run_id, image_id, split, task, true_label, pred_label, correct, "
                            "confidence) VALUES ('r1', ?, 'test', 'period', 'P', ?, ?, 0.9)",
                            [image, "P" if j < right else "Q", j < right])
                n += 1
    return "r1"


def test_the_finder_lists_only_slices_of_the_minimum_size_worst_first(tmp_path, monkeypatch):
    path = tmp_path / "store.duckdb"
    run_id = small_store(path)
    monkeypatch.setenv("PERIODEYE_STORE", str(path))
    found = q.worst(run_id, "test", min_size=10)
    assert list(found["value"]) == ["B", "A"]  # C (5 images) is too small; one-valued dimensions are no slices
    assert (found["n"] >= 10).all()
    assert found["gap"].iloc[0] == pytest.approx(33 / 60 - wilson(3, 15)[1])
    assert list(q.worst(run_id, "test", min_size=5)["value"][:2]) == ["C", "B"]
    assert q.worst(run_id, "test", min_size=41).empty


def test_a_saved_slice_keeps_its_id_through_a_rename_and_names_stay_unique(tmp_path):
    with store.connect(tmp_path / "store.duckdb") as con:
        first = writer.save(con, "  Late   Baroque portraits! ", {"aspect": ["portrait (w/h < 0.8)"]}, "Ana")
        assert first == "late-baroque-portraits"
        with pytest.raises(writer.SliceError, match="exists already"):
            writer.save(con, "late baroque PORTRAITS", {"artist": ["x"]}, "Ben")
        writer.rename(con, first, "Portraits after 1600")
        again = writer.save(con, "Late baroque portraits", {"artist": ["x"]}, None)
        assert again == "late-baroque-portraits-2"  # the old id still names the renamed slice
        assert con.execute("SELECT name, author FROM slices WHERE slice_id = ?", [first]).fetchone() == (
            "Portraits after 1600", "Ana")
        for bad, message in (("", "Give the slice a name"), ("!!!", "letter or digit"), ("x" * 81, "under 80")):
            with pytest.raises(writer.SliceError, match=message):
                writer.save(con, bad, {"artist": ["x"]}, None)
        with pytest.raises(writer.SliceError, match="at least one"):
            writer.save(con, "empty", {"artist": []}, None)
        writer.delete(con, again)
        with pytest.raises(writer.SliceError, match="deleted"):
            writer.delete(con, again)


# -- on real paintings, with artists, dates, near copies and a verdict added (the manifest has none of them)

DATE_TEXTS = ["1574-88", "c. 1500", "1650s", None, "1620-1625", "1898", "early 1700s"]


def add_slice_metadata(path) -> None:
    """Artists (one seen only in test, some images without), real-looking dates, three widths and a near-copy group
    on every image of the store at `path`."""
    with duckdb.connect(str(path)) as con:
        ids = [r[0] for r in con.execute("SELECT image_id FROM images ORDER BY image_id").fetchall()]
        for n, image in enumerate(ids):
            con.execute("UPDATE images SET artist = ?, date = ?, width = ?, height = 100 WHERE image_id = ?",
                        [None if n % 11 == 0 else f"Painter {n % 6}", DATE_TEXTS[n % len(DATE_TEXTS)],
                         (60, 100, 140)[n % 3], image])
        dataset = con.execute("SELECT dataset_id FROM images LIMIT 1").fetchone()[0]
        con.execute("UPDATE images SET artist = 'Painter test only' WHERE split = 'test' AND artist = 'Painter 5'")
        con.executemany("INSERT INTO near_copies VALUES (?, 'g1', ?, 'phash', 0.9)", [[dataset, i] for i in ids[::9]])


@pytest.fixture(scope="module")
def sliced_store(real_store, tmp_path_factory):
    path = copy_store(real_store, tmp_path_factory.mktemp("slices"))
    add_slice_metadata(path)
    return path


def hand_slices(path, run_id: str, split: str) -> pd.DataFrame:
    """The same numbers from the predictions and images tables, in pandas."""
    with duckdb.connect(str(path), read_only=True) as con:
        p = con.execute("SELECT * FROM predictions WHERE run_id = ? AND split = ? AND task = 'period'",
                        [run_id, split]).df()
        images = con.execute("SELECT * FROM images WHERE dataset_id = (SELECT dataset_id FROM runs WHERE run_id = ?)",
                             [run_id]).df()
        near = {r[0] for r in con.execute("SELECT image_id FROM near_copies").fetchall()}
        flagged = dict(con.execute("SELECT image_id, issue FROM label_quality").fetchall())
    df = p.merge(images, on="image_id", suffixes=("", "_image"))
    trained = set(images.loc[images["split"] == "train", "artist"].dropna())

    def bucket(text):
        found = re.search(r"\d{4}", text if isinstance(text, str) else "")
        if not found:
            return q.NO_DATE
        start = int(found.group()) // 50 * 50
        return f"{start}–{start + 49}"

    def shape(r):
        ratio = r.width / r.height
        return ("portrait (w/h < 0.8)" if ratio < 0.8 else "landscape (w/h > 1.25)" if ratio > 1.25
                else "square (0.8–1.25)")

    def audit(image):
        issue = flagged.get(image)
        return "not audited" if issue is None else "label flagged" if issue else "label not flagged"

    columns = {
        "artist": df["artist"].fillna("no artist"),
        "period": df["true_label"],
        "date": df["date"].map(bucket),
        "aspect": df.apply(shape, axis=1),
        "near_copy": df["image_id"].map(lambda i: "in a near-copy group" if i in near else "no near copy"),
        "label_issue": df["image_id"].map(audit),
        "training": df["artist"].map(lambda a: "no artist" if a is None or a != a else
                                     "artist seen in training" if a in trained else "artist not in training"),
    }
    rows = []
    for dimension, values in columns.items():
        for value, group in df.groupby(values):
            k, n = int(group["correct"].sum()), len(group)
            rows.append((dimension, value, n, n - k, k / n, *wilson(k, n)))
    return pd.DataFrame(rows, columns=["dimension", "value", "n", "errors", "accuracy", "low", "high"])


@pytest.mark.slow
def test_slice_metrics_equal_a_hand_computation_and_the_gallery_shows_the_same_images(sliced_store, monkeypatch):
    monkeypatch.setenv("PERIODEYE_STORE", str(sliced_store))
    [run_id, *_] = q.query("SELECT run_id FROM runs ORDER BY run_id")["run_id"]
    got = q.slice_metrics(run_id, "test")
    expected = hand_slices(sliced_store, run_id, "test")
    merged = expected.merge(got, on=["dimension", "value"], how="left", suffixes=("", "_sql"))
    assert merged["n_sql"].notna().all(), merged[merged["n_sql"].isna()]
    for column in ("n", "errors", "accuracy", "low", "high"):
        assert merged[column].to_numpy() == pytest.approx(merged[f"{column}_sql"].to_numpy().astype(float))
    assert set(got.loc[got["dimension"] == "training", "value"]) == {
        "no artist", "artist seen in training", "artist not in training"}
    assert len(set(got.loc[got["dimension"] == "date", "value"])) == 7  # six buckets and "no date"
    for r in got[got["dimension"].isin(["date", "training", "size"])].itertuples():
        within = {r.dimension: [r.value]}
        assert gallery.count(gallery.GalleryFilter(run_id, "test", outcome="wrong", within=within)) == r.errors
        assert gallery.count(gallery.GalleryFilter(run_id, "test", outcome="all", within=within)) == r.n
    runs_seen = q.across_runs({"date": ["1550–1599"], "aspect": ["square (0.8–1.25)"]}, "test")
    assert len(runs_seen) == len(q.query("SELECT run_id FROM runs"))
    both = expected[(expected["dimension"] == "date") & (expected["value"] == "1550–1599")]
    assert runs_seen.set_index("run_id").loc[run_id, "n"] <= int(both["n"].iloc[0])


@pytest.mark.slow
def test_a_collection_of_one_size_is_one_size_not_all_small(real_store, monkeypatch):
    monkeypatch.setenv("PERIODEYE_STORE", str(real_store))
    [run_id, *_] = q.query("SELECT run_id FROM runs ORDER BY run_id")["run_id"]
    sizes = q.query("SELECT DISTINCT width, height FROM images")
    assert len(sizes) == 1  # the shared WikiArt paintings are all 224 × 224
    got = q.slice_metrics(run_id, "test")
    size = got[got["dimension"] == "size"]
    assert list(size["value"]) == [q.ONE_SIZE]
    assert int(size["n"].iloc[0]) == int(got.loc[got["dimension"] == "period", "n"].sum())


@pytest.mark.slow
def test_a_saved_slice_opens_by_its_link_with_every_run(sliced_store, tmp_path, monkeypatch):
    path = copy_store(sliced_store, tmp_path)
    slice_id = q.save_slice("Late sixteenth century", {"date": ["1550–1599"]}, "Ana", path=path)
    at = open_dashboard(path, monkeypatch, "slices.py", slice=slice_id)
    text = "\n".join(m.value for m in at.markdown)
    assert "Late sixteenth century" in text and "saved by Ana" in text
    run_ids = [r[0] for r in duckdb.connect(str(path), read_only=True).execute("SELECT run_id FROM runs").fetchall()]
    table = next(m.value for m in at.markdown if m.value.startswith("| run |"))
    assert all(run_id.replace("/", "") in table.replace("/", "").replace("\\", "") for run_id in run_ids)
    assert at.query_params["slice"] == slice_id
    missing = open_dashboard(path, monkeypatch, "slices.py", slice="no-such-slice")
    assert any("no-such-slice" in w.value and "Late sixteenth century" in w.value for w in missing.warning)
    assert missing.query_params["slice"] == "no-such-slice"  # the link is kept, no other slice shown in its place
    assert not any(m.value.startswith("| run |") for m in missing.markdown)


def test_the_verdict_that_counts_is_the_runs_own_then_the_latest(tmp_path, monkeypatch):
    from pipeline import annotations

    path = tmp_path / "store.duckdb"
    run_id = small_store(path)
    with store.connect(path) as con:
        annotations.save(con, "d1", "img000", run_id, "ambiguous", "", "Ana")
        annotations.save(con, "d1", "img000", None, "model right", "", "Ben")  # later, but not on this run
        annotations.save(con, "d1", "img001", None, "label wrong", "", "Ben")
        first = annotations.save(con, "d1", "img002", run_id, "label wrong", "", "Cy")
        annotations.withdraw(con, first, "Cy")  # withdrawn: no verdict
    monkeypatch.setenv("PERIODEYE_STORE", str(path))
    got = q.slice_metrics(run_id, "test").query("dimension == 'verdict'").set_index("value")["n"].to_dict()
    assert got == {"ambiguous": 1, "label wrong": 1, "no verdict": 58}


def test_a_slice_survives_the_url_and_unknown_dimensions_are_left_out():
    within = {"date": ["1600–1649", "1650–1699"], "artist": ["Anonymous: Flemish"]}
    assert q.parse_within(q.url_values(within) + ["nonsense:x", "artist:", "date:1600–1649"]) == within
    sql_text, params = q.clause(within)
    assert params == ["1600–1649", "1650–1699", "Anonymous: Flemish"] and sql_text.count("?") == 3
    assert q.clause({}) == ("TRUE", [])
