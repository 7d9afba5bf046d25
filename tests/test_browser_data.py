"""The Data page in a real browser on real paintings, by the user's gestures: copies of one work listed with their
splits and labels, the filter to groups that straddle splits, and an image opened in the Inspector.

Its own server over a private copy of the real store, to which this file adds near-copy groups, an exact copy of a
painting and label-audit rows (the pipeline fills those tables; here they are known, so the page's counts are too).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlparse

import duckdb
import pytest
from playwright.sync_api import expect

from tests.browser import Served, open_page, shot, start_server, stop, wait_for_app
from tests.conftest import copy_store, sql

pytestmark = pytest.mark.browser


def add_copies(store) -> dict:
    """Three near-copy groups (one straddling splits, one with conflicting labels, one neither), one exact copy in
    another split (straddling), and two flagged label-audit rows, on the best run's dataset."""
    [(dataset,)] = sql(store, "SELECT dataset_id FROM runs ORDER BY test_accuracy DESC, run_id LIMIT 1")
    train = sql(store, "SELECT image_id, period FROM images WHERE dataset_id = ? AND split = 'train' "
                       "ORDER BY period, image_id", [dataset])
    test = sql(store, "SELECT image_id, period FROM images WHERE dataset_id = ? AND split = 'test' "
                      "ORDER BY period, image_id", [dataset])
    straddle = [train[0][0], train[1][0], test[0][0]]  # same period, train and test
    other = next(i for i, p in train if p != train[2][1])
    [before] = sql(store, """SELECT count(*), coalesce(sum(n), 0), count(*) FILTER (splits > 1),
                                    coalesce(sum(n) FILTER (splits > 1), 0), count(*) FILTER (labels > 1)
                             FROM (SELECT count(*) AS n, count(DISTINCT split) AS splits,
                                          count(DISTINCT period) AS labels
                                   FROM images WHERE dataset_id = ? GROUP BY content_hash HAVING count(*) > 1)""",
                   [dataset])  # the real set's own exact duplicates
    [audited] = sql(store, "SELECT count(*), count(*) FILTER (issue) FROM label_quality WHERE dataset_id = ?",
                    [dataset])  # the label audit's rows, if the pipeline wrote any
    conflict = [train[2][0], other]
    plain = [train[5][0], train[6][0]]
    rows = [("g-straddle", i, "phash", 0.97) for i in straddle] + [("g-conflict", i, "embedding", 0.93)
                                                                   for i in conflict]
    rows += [("g-plain", i, "title", 1.0) for i in plain]
    with duckdb.connect(str(store)) as con:
        con.executemany("INSERT INTO near_copies VALUES (?, ?, ?, ?, ?)", [(dataset, *r) for r in rows])
        con.execute("""INSERT INTO images SELECT dataset_id, 'copy-of-' || image_id, path, period, artist, title, date,
                       'test', content_hash, width, height, thumbnail, source FROM images
                       WHERE dataset_id = ? AND image_id = ?""", [dataset, train[8][0]])
        con.executemany("INSERT INTO label_quality VALUES (?, ?, ?, ?, ?, ?, 5, now())",
                        [(dataset, train[3][0], train[3][1], 0.02, "Baroque", True),
                         (dataset, train[4][0], train[4][1], 0.05, "Baroque", True)])
    groups, images, straddling, straddling_images, conflicting = (int(v) for v in before)
    return {"dataset": dataset, "straddle": straddle, "exact": train[8][0],
            "all": (groups + 4, images + 9), "straddling": (straddling + 2, straddling_images + 5),
            "conflicting": conflicting + 1, "audited": (audited[0] + 2, audited[1] + 2)}


@pytest.fixture(scope="module")
def copies(real_store, tmp_path_factory) -> Iterator[tuple[Served, dict]]:
    folder = tmp_path_factory.mktemp("data-page")
    store = copy_store(real_store, folder / "store")
    added = add_copies(store)
    server, url = start_server(store, folder / "server.log")
    try:
        yield Served(url, store), added
    finally:
        stop(server)


def heading(page):
    return page.get_by_role("heading").filter(has_text=re.compile(r"groups of copies"))


def test_filter_to_straddling_groups_then_open_one_image_in_the_inspector(page, copies):
    served, added = copies
    open_page(page, served, "data")
    groups, images = added["all"]
    expect(heading(page)).to_have_text(re.compile(rf"^{groups} groups of copies \({images} images\)"),
                                       timeout=60_000)
    main = page.locator("[data-testid='stMain']")
    expect(main.get_by_text("straddles splits")).to_have_count(added["straddling"][0])
    expect(main.get_by_text("conflicting labels", exact=True)).to_have_count(added["conflicting"])
    expect(page.get_by_text("Likely label errors")).to_be_visible()
    scored, flagged = added["audited"]
    expect(page.get_by_text(f"{flagged:,} of {scored:,} images flagged by the label audit")).to_be_visible()
    shot(page, "data")

    page.locator("[data-testid='stSidebar']").get_by_text("Only groups across splits").click()
    groups, images = added["straddling"]
    expect(heading(page)).to_have_text(re.compile(rf"^{groups} groups of copies \({images} images\)"),
                                       timeout=30_000)
    wait_for_app(page)
    assert parse_qs(urlparse(page.url).query)["straddle"] == ["1"]
    expect(main.get_by_text("straddles splits")).to_have_count(groups)

    first = main.get_by_role("link", name="inspect", exact=True).first
    target = parse_qs(urlparse(first.get_attribute("href") or "").query)["image"][0]
    straddling = sql(served.store, """SELECT image_id FROM images WHERE dataset_id = ? AND content_hash IN (
                                          SELECT content_hash FROM images WHERE dataset_id = ? GROUP BY 1
                                          HAVING count(DISTINCT split) > 1)""", [added["dataset"]] * 2)
    assert target in {*added["straddle"], *(i for (i,) in straddling)}
    if first.get_attribute("target") == "_blank":  # Streamlit opens a Markdown link in a new tab
        with page.context.expect_page() as opened:
            first.click()
        page = opened.value
    else:
        first.click()
    page.wait_for_url("**/inspector?*", timeout=30_000)
    wait_for_app(page)
    assert parse_qs(urlparse(page.url).query)["image"] == [target]
    page.get_by_text("What the networks looked at").wait_for(timeout=30_000)
