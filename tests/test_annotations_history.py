"""Annotations keep their history: an edit adds a version, a withdrawal hides one but keeps it, nothing is deleted;
an older store gains the history columns; the per-run expert summary counts by hand."""

from __future__ import annotations

import duckdb
import pytest

from dashboard.queries import verdicts
from pipeline import annotations, store
from pipeline.__main__ import main
from tests.conftest import sql
from tests.test_annotations_import import small_store


@pytest.fixture
def small(tmp_path, monkeypatch):
    path = small_store(tmp_path)
    monkeypatch.setenv("PERIODEYE_STORE", str(path))
    return path


def test_edit_adds_a_version_and_withdraw_hides_but_keeps(small):
    first = verdicts.save_annotation("d", "i2", "e/r1", "ambiguous", "not sure", "Ada", path=small)
    edited = verdicts.revise_annotation(first, "label wrong", "a Vermeer, surely", "Ada", path=small)
    assert verdicts.list_annotations()[["annotation_id", "verdict"]].values.tolist() == [[edited, "label wrong"]]
    history = verdicts.annotations_for("d", "i2")
    assert history[["verdict", "current"]].values.tolist() == [["label wrong", True], ["ambiguous", False]]
    assert history["revises"].iloc[0] == first and history["revises"].isna().iloc[1]
    with pytest.raises(annotations.AnnotationError, match="edited or withdrawn in the meantime"):
        verdicts.revise_annotation(first, "model right", "", "Bea", path=small)  # a stale page: refused, not forked
    withdrawal = verdicts.withdraw_annotation(edited, "Ada", path=small)
    assert verdicts.list_annotations().empty
    every = verdicts.list_annotations(all_versions=True)
    assert every["annotation_id"].tolist()[0] == withdrawal and every["withdrawn"].tolist() == [True, False, False]
    assert sql(small, "SELECT count(*) FROM annotations")[0][0] == 3
    with pytest.raises(annotations.AnnotationError):
        verdicts.withdraw_annotation(edited, "Ada", path=small)  # already withdrawn


def test_a_second_verdict_by_the_same_person_is_a_new_version_of_theirs(small):
    ada = verdicts.save_annotation("d", "i2", "e/r1", "ambiguous", "", "Ada", path=small)
    bea = verdicts.save_annotation("d", "i2", "e/r1", "model right", "", "Bea", path=small)
    again = verdicts.save_annotation("d", "i2", "e/r1", "label wrong", "", "Ada", path=small)
    assert dict(sql(small, "SELECT annotation_id, revises FROM annotations")) == {ada: None, bea: None, again: ada}
    assert sorted(verdicts.list_annotations()["author"]) == ["Ada", "Bea"]


def test_expert_summary_and_current_verdicts_count_by_hand(small):
    """r1 gets i0, i1 right and i2..i5 wrong; r2 gets all but i5 right (six test images each)."""
    with store.connect(small) as con:
        annotations.save(con, "d", "i2", "e/r1", "label wrong", "", "Ada")
        changed = annotations.save(con, "d", "i3", "e/r1", "ambiguous", "", "Ada")
        annotations.revise(con, changed, "model right", "", "Ada")  # counts as its latest version
        gone = annotations.save(con, "d", "i4", "e/r1", "label wrong", "", "Bea")
        annotations.withdraw(con, gone, "Bea")  # counts as nothing
        annotations.save(con, "d0", "old2", "e/r2", "outside its period", "", "Cy")  # r2's verdict on a copy of i2
        annotations.save(con, "d", "i5", "e/r2", "outside its period", "", "Cy")
    summary = verdicts.expert_summary(["e/r1", "e/r2"]).set_index("run_id")
    r1, r2 = summary.loc["e/r1"], summary.loc["e/r2"]
    assert (r1.errors, r1.reviewed_errors, r1.label_wrong, r1.model_right, r1.ambiguous, r1.outside) == (
        4, 3, 1, 1, 0, 1)  # i5: Cy's verdict (on r2), the painting's only one
    assert r1.accuracy == pytest.approx(2 / 6) and r1.accuracy_if_experts_right == pytest.approx(4 / 6)
    assert (r2.errors, r2.reviewed_errors, r2.outside) == (1, 1, 1)
    assert r2.accuracy == pytest.approx(5 / 6) and r2.accuracy_if_experts_right == pytest.approx(5 / 6)
    current = verdicts.current_verdicts("e/r1")
    assert current[["image_id", "verdict", "author"]].values.tolist() == [
        ["i2", "label wrong", "Ada"], ["i3", "model right", "Ada"], ["i5", "outside its period", "Cy"]]
    assert verdicts.current_verdicts("e/r2").set_index("image_id").loc["i2", "verdict"] == "outside its period"


def test_an_older_store_gains_the_history_columns_and_keeps_its_annotations(small):
    with duckdb.connect(str(small)) as con:
        con.execute("INSERT INTO annotations (annotation_id, dataset_id, image_id, content_hash, run_id, verdict, "
                    "author, created_at) VALUES ('old', 'd', 'i2', 'h2', 'e/r1', 'ambiguous', 'Ada', '2025-01-01')")
        for column in ("revises", "withdrawn", "source"):
            con.execute(f"ALTER TABLE annotations DROP COLUMN {column}")
        con.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    with pytest.raises(store.StoreError, match="older Period Eye"):
        store.check_store(small)
    assert main(["upgrade", "--store", str(small)]) == 0
    assert sql(small, "SELECT annotation_id, revises, withdrawn FROM annotations") == [("old", None, None)]
    assert verdicts.list_annotations()["annotation_id"].tolist() == ["old"]  # an old row is current
    verdicts.revise_annotation("old", "label wrong", "", "Ada", path=small)
    assert verdicts.list_annotations()["verdict"].tolist() == ["label wrong"]


def test_a_gallery_tile_counts_and_shows_current_versions_only(small):
    from dashboard.queries import gallery

    first = verdicts.save_annotation("d", "i2", "e/r1", "ambiguous", "not sure", "Ada", path=small)
    verdicts.revise_annotation(first, "label wrong", "a Vermeer", "Ada", path=small)
    gone = verdicts.save_annotation("d", "i2", "e/r1", "model right", "", "Bea", path=small)
    verdicts.withdraw_annotation(gone, "Bea", path=small)
    tiles = gallery.page(gallery.GalleryFilter("e/r1", None, outcome="all"), 50, thumbnails=False)
    tile = tiles.set_index("image_id").loc["i2"]
    assert (tile["annotations"], tile["annotation_text"]) == (1, "label wrong: a Vermeer (Ada)")
