"""Errors gallery, Inspector and Overview on a real store, through Streamlit's AppTest."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import copy_store, open_dashboard, sql


def app(monkeypatch, store, page: str | None = None, **params) -> AppTest:
    return open_dashboard(store, monkeypatch, page, **params)



def gallery_count(at: AppTest) -> int:
    return int(at.subheader[0].value.split()[0].replace(",", ""))


@pytest.mark.slow
def test_overview_lists_every_run(monkeypatch, demo_store):
    at = app(monkeypatch, demo_store)
    assert at.metric[0].value == "5"
    shown = at.dataframe[0].value
    assert sorted(shown["run_id"]) == sorted(r[0] for r in sql(demo_store, "SELECT run_id FROM runs"))
    assert "synthetic" in at.warning[0].value


def test_empty_store_explains_how_to_make_artifacts(monkeypatch, tmp_path):
    for page in (None, "errors.py", "inspector.py"):
        at = app(monkeypatch, tmp_path / "nothing.duckdb", page)
        assert "make artifacts" in at.info[0].value


@pytest.mark.slow
def test_gallery_filters_change_what_is_shown(monkeypatch, demo_store):
    run = "tiny/finetune"
    wrong = sql(demo_store, "SELECT count(*) FROM predictions WHERE run_id = ? AND task = 'period' AND split = 'test' "
                            "AND NOT correct", [run])[0][0]
    at = app(monkeypatch, demo_store, "errors.py", run=run)
    assert gallery_count(at) == wrong
    assert len(at.get("image")) == min(wrong, 24)  # one thumbnail per tile on the first page
    at = app(monkeypatch, demo_store, "errors.py", run=run, outcome="all")
    assert gallery_count(at) == sql(demo_store, "SELECT count(*) FROM predictions WHERE run_id = ? AND task = "
                                                "'period' AND split = 'test'", [run])[0][0]
    # a confusion cell (true, predicted) and an artist
    true, pred, n = sql(demo_store, """SELECT true_label, pred_label, count FROM confusion WHERE run_id = ? AND
                                       split = 'test' AND task = 'period' ORDER BY count DESC LIMIT 1""", [run])[0]
    at = app(monkeypatch, demo_store, "errors.py", run=run, outcome="all", true=[true], pred=[pred])
    assert gallery_count(at) == n
    artist = sql(demo_store, "SELECT artist FROM images WHERE artist IS NOT NULL LIMIT 1")[0][0]
    at = app(monkeypatch, demo_store, "errors.py", run=run, outcome="all", artist=[artist])
    assert gallery_count(at) == sql(demo_store, """SELECT count(*) FROM predictions p JOIN images i USING (image_id)
        WHERE p.run_id = ? AND p.task = 'period' AND p.split = 'test' AND i.artist = ?""", [run, artist])[0][0]
    # a confidence range in the URL (paging: test_gallery_pages)
    at = app(monkeypatch, demo_store, "errors.py", run=run, outcome="all", cmin="0.9")
    assert gallery_count(at) == sql(demo_store, """SELECT count(*) FROM predictions WHERE run_id = ? AND
        task = 'period' AND split = 'test' AND confidence >= 0.9""", [run])[0][0]


def at_page(at: AppTest, number: int) -> AppTest:
    """The same gallery with `page=number` in its URL (`page` also names open_dashboard's page file)."""
    at.query_params["page"] = str(number)
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.mark.slow
def test_gallery_pages(monkeypatch, demo_store):
    """Page 2 from the URL and from the pager's `next →`: the tiles that follow page 1's, in the same order; back with
    `← previous`; a link past the end shows the last page and says so (ui.pager, as on Compare)."""
    run = "tiny/head"
    expected = [image for image, _ in expected_order(demo_store, run, "most confident first", split=None)]
    first = app(monkeypatch, demo_store, "errors.py", run=run, outcome="all", split="all")
    size = len(tiles(first))
    pages = -(-len(expected) // size)
    assert size > 0 and pages >= 2 and gallery_count(first) == len(expected)
    assert tiles(first) == expected[:size]
    assert page_label(first) == f"page 1 of {pages}" and "page" not in first.query_params
    assert first.button(key="page_previous").disabled and not first.button(key="page_next").disabled
    second = at_page(app(monkeypatch, demo_store, "errors.py", run=run, outcome="all", split="all"), 2)
    assert tiles(second) == expected[size : 2 * size]
    assert page_label(second) == f"page 2 of {pages}"
    first.button(key="page_next").click().run()
    assert not first.exception, first.exception
    assert url_page(first) == "2" and page_label(first) == f"page 2 of {pages}" and tiles(first) == tiles(second)
    first.button(key="page_previous").click().run()
    assert "page" not in first.query_params and tiles(first) == expected[:size]
    first.button(key="page_bottom_next").click().run()  # the same pager again, below the tiles
    assert url_page(first) == "2" and tiles(first) == tiles(second)
    assert [page_label(first)] * 2 == [m.value for m in first.markdown if re.fullmatch(r"page \d+ of \d+", m.value)]
    last = at_page(app(monkeypatch, demo_store, "errors.py", run=run, outcome="all", split="all"), pages + 5)
    assert tiles(last) == expected[(pages - 1) * size :]  # past the end: the last page, with a note saying so
    assert [i.value for i in last.info] == [f"There is no page {pages + 5}: {len(expected):,} images fill {pages} "
                                            f"pages. Showing page {pages}."]
    assert page_label(last) == f"page {pages} of {pages}" and url_page(last) == str(pages)
    assert last.button(key="page_next").disabled


@pytest.mark.slow
def test_tiles_explain_their_caption_and_name_their_split_when_every_split_is_shown(monkeypatch, demo_store):
    captions = {}
    for split in ("test", "all"):
        at = app(monkeypatch, demo_store, "errors.py", run="tiny/head", outcome="all", split=split)
        assert any("true period → model's guess" in c.value and "probability it gave its guess" in c.value
                   for c in at.caption)
        captions[split] = [m.value.split("  \n")[0] for m in at.markdown if "(inspector?" in m.value]
    assert captions["test"] and all(re.search(r"\d+%$", c) for c in captions["test"])
    shown = {c.rsplit(" · ", 1)[-1] for c in captions["all"]}
    assert shown <= {"train", "val", "test"} and len(shown) > 1  # tile order mixes splits on the first page


@pytest.mark.slow
def test_both_exports_stay_after_preparing_them_until_the_filter_changes(monkeypatch, demo_store):
    at = app(monkeypatch, demo_store, "errors.py", run="tiny/head", outcome="all")
    assert not at.get("download_button")
    at.button(key="prepare_export").click().run()
    labels = ["Download HTML gallery", "Download CSV"]
    assert [b.proto.label for b in at.get("download_button")] == labels
    at.run()  # any later rerun (a download that reran, a widget elsewhere) keeps both
    assert [b.proto.label for b in at.get("download_button")] == labels
    at.query_params["outcome"] = "wrong"
    at.run()  # files made for another filter are not offered for this one
    assert not at.exception and not at.get("download_button")


def page_label(at: AppTest) -> str:
    """The pager's "page k of n"."""
    return next(m.value for m in at.markdown if re.fullmatch(r"page \d+ of \d+", m.value))


def url_page(at: AppTest) -> str:
    value = at.query_params["page"]
    return value[0] if isinstance(value, list) else value


def tiles(at: AppTest) -> list[str]:
    """The image ids of the gallery's tiles, in the order the page shows them (from their `inspect` links)."""
    links = (m for e in at.markdown for m in re.findall(r"\(inspector\?([^)\s]+)\)", e.value))
    return [parse_qs(link)["image"][0] for link in links]


# Each sort, written independently of the page's SQL: (key, descending); ties by image id.
SORT_KEYS = {
    "least confident first": ("p.confidence", False),
    "most confident first": ("p.confidence", True),
    "highest loss first": ("p.loss", True),
    "explanations disagree most": ("(SELECT 1 - avg(spearman) FROM attribution_agreement g WHERE g.run_id = p.run_id "
                                   "AND g.image_id = p.image_id AND g.target_kind = 'predicted')", True),
}


def expected_order(store: Path, run: str, sort: str, split: str | None = "test") -> list[tuple[str, float | None]]:
    key, descending = SORT_KEYS[sort]
    rows = sql(store, f"SELECT image_id, {key} FROM predictions p WHERE run_id = ? AND task = 'period' "
                      "AND coalesce(split = ?, true)", [run, split])
    known = sorted((r for r in rows if r[1] is not None), key=lambda r: (-r[1] if descending else r[1], r[0]))
    return known + sorted(r for r in rows if r[1] is None)  # NULLS LAST


@pytest.mark.slow
@pytest.mark.parametrize("sort", list(SORT_KEYS))
def test_gallery_sorts(monkeypatch, demo_store, sort):
    at = app(monkeypatch, demo_store, "errors.py", run="tiny/head", outcome="all", sort=sort)
    assert gallery_count(at) > 0 and at.selectbox(key="w_sort").value == sort
    shown, expected = tiles(at), expected_order(demo_store, "tiny/head", sort)
    assert shown and shown == [image for image, _ in expected[: len(shown)]]
    values = [value for _, value in expected[: len(shown)]]
    assert len(set(values)) > 1  # the key varies over the page, so the order checked is the sort's, not the ties'


@pytest.mark.slow
def test_inspector_shows_probabilities_maps_and_neighbours(monkeypatch, demo_store):
    image = sql(demo_store, "SELECT image_id FROM attributions WHERE run_id = 'tiny/head' LIMIT 1")[0][0]
    at = app(monkeypatch, demo_store, "inspector.py", run="tiny/head", image=image)
    n_maps = sql(demo_store, "SELECT count(*) FROM attributions WHERE image_id = ? AND target_kind = 'predicted'",
                 [image])[0][0]
    # big thumbnail + one overlay per stored (run, method) + neighbours
    assert len(at.get("image")) >= 1 + n_maps + 1
    assert any("What the networks looked at" in s.value for s in at.subheader)


@pytest.mark.slow
def test_inspector_on_a_store_without_attributions(monkeypatch, store_without_attributions):
    at = app(monkeypatch, store_without_attributions, "inspector.py")
    assert any("No saliency maps" in i.value for i in at.info)


IMAGE_TITLE = "![t](http://127.0.0.1:8799/p.png)"  # made the browser fetch an outside image on the Errors page
HTML_ARTIST = "<img src=http://127.0.0.1:8799/q.png> _Rembrandt_"


@pytest.fixture(scope="module")
def hostile_text_store(store_without_attributions, tmp_path_factory) -> Path:
    """A store whose every image has a Markdown image for a title and an HTML image for an artist."""
    store = copy_store(store_without_attributions, tmp_path_factory.mktemp("hostile-text"))
    with duckdb.connect(str(store)) as con:
        con.execute("UPDATE images SET title = ?, artist = ?", [IMAGE_TITLE, HTML_ARTIST])
    return store


def markdown_bodies(at: AppTest) -> list[str]:
    """The text of every element the browser renders as Markdown."""
    kinds = ("markdown", "caption", "info", "warning", "error", "success", "subheader", "title")
    return [e.value for kind in kinds for e in getattr(at, kind)]


@pytest.mark.slow
@pytest.mark.parametrize("page", ["errors.py", "inspector.py", "annotations.py"])
def test_titles_and_artists_render_as_text_not_markdown_or_html(monkeypatch, hostile_text_store, page):
    (image_id,) = sql(hostile_text_store, "SELECT min(image_id) FROM predictions WHERE split = 'test'")[0]
    at = app(monkeypatch, hostile_text_store, page, run="tiny/head", outcome="all", image=image_id)
    bodies = markdown_bodies(at)
    shown = "\n".join(bodies)
    assert r"\!\[t\]\(http\://127.0.0.1\:8799/p.png\)" in shown  # the title, escaped
    assert "&lt;img src=http\\://127.0.0.1\\:8799/q.png&gt; \\_Rembrandt\\_" in shown  # the artist, escaped
    assert not any("![" in b or "<img" in b or "](http" in b for b in bodies)
