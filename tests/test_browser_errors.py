"""Errors by the user's gestures in a real browser on real paintings: click a confusion cell, page on, and take
both exports home in one visit (the HTML opened from disk)."""

from __future__ import annotations

import csv
import io
import re
from urllib.parse import parse_qs, quote, urlparse

import duckdb
import pytest
from playwright.sync_api import expect

from tests.browser import Served, open_page, shot, wait_for_app

pytestmark = pytest.mark.browser

COUNT = re.compile(r"^[\d,]+ images$")


def one(store, sql: str, params: list | None = None):
    with duckdb.connect(str(store), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def best_run(served: Served) -> str:
    return one(served.store, "SELECT run_id FROM runs ORDER BY test_accuracy DESC, run_id LIMIT 1")[0][0]


def shown_count(page) -> int:
    return int(page.get_by_role("heading").filter(has_text=COUNT).first.inner_text().split()[0].replace(",", ""))


def url_params(page) -> dict[str, list[str]]:
    return parse_qs(urlparse(page.url).query)


def test_clicking_a_confusion_cell_filters_the_gallery(page, served):
    run = best_run(served)
    true, pred, n = one(served.store, """SELECT true_label, pred_label, count FROM confusion WHERE run_id = ?
        AND task = 'period' AND split = 'test' AND true_label <> pred_label ORDER BY count DESC LIMIT 1""", [run])[0]
    open_page(page, served, f"errors?run={quote(run)}")
    before = shown_count(page)
    assert before != n and "true" not in url_params(page)
    plot = page.locator(".js-plotly-plot").first
    index = plot.evaluate("(el, [t, p]) => el.data[1].x.findIndex((x, i) => x === p && el.data[1].y[i] === t)",
                          [true, pred])
    assert index >= 0
    box = page.locator(".js-plotly-plot g.trace.scatter path.point").nth(index).bounding_box()
    assert box
    page.mouse.click(box["x"] + box["width"] / 2 + 8, box["y"] + box["height"] / 2 + 4)  # in the cell, off centre
    page.wait_for_url(re.compile(r"[?&]pred="), timeout=30_000)
    wait_for_app(page)
    expect(page.get_by_role("heading").filter(has_text=COUNT)).to_have_text(f"{n:,} images")
    params = url_params(page)
    assert params["true"] == [true] and params["pred"] == [pred] and params["outcome"] == ["all"]
    shot(page, "errors-cell")


def test_next_page_then_both_exports_in_one_visit(page, served, tmp_path):
    run = best_run(served)
    total = one(served.store, "SELECT count(*) FROM predictions WHERE run_id = ? AND task = 'period'", [run])[0][0]
    pages = -(-total // 24)
    assert pages >= 3
    open_page(page, served, f"errors?run={quote(run)}&outcome=all&split=all")
    assert shown_count(page) == total
    page.get_by_role("button", name="next →").first.click()  # the pager above the tiles
    page.wait_for_url(re.compile(r"[?&]page=2"), timeout=30_000)
    wait_for_app(page)
    expect(page.get_by_text(f"page 2 of {pages}")).to_have_count(2)  # above and below the tiles
    page.get_by_role("button", name="next →").last.click()  # the pager below them
    page.wait_for_url(re.compile(r"[?&]page=3"), timeout=30_000)
    wait_for_app(page)
    expect(page.get_by_text(f"page 3 of {pages}")).to_have_count(2)
    shot(page, "errors")

    page.get_by_text("Share this gallery").click()
    page.get_by_role("button", name=re.compile("Prepare HTML and CSV")).click()
    with page.expect_download() as html_download:
        page.get_by_role("button", name="Download HTML gallery").click()
    with page.expect_download() as csv_download:  # the second button is still there: no second "Prepare"
        page.get_by_role("button", name="Download CSV").click()
    exported = min(total, 500)
    rows = list(csv.DictReader(io.StringIO(csv_download.value.path().read_text(encoding="utf-8"))))
    assert len(rows) == exported and {r["split"] for r in rows} >= {"train", "test"}

    saved = tmp_path / html_download.value.suggested_filename
    html_download.value.save_as(saved)
    assert re.fullmatch(r"period-eye_.+_all-splits-all_\d{4}-\d\d-\d\d\.html", saved.name)  # run, filter, date
    offline = page.context.new_page()
    offline.goto(saved.as_uri())
    assert offline.title().endswith(f"({run})")
    assert offline.locator("figure").count() == exported
    assert offline.locator(".legend").inner_text().startswith("How to read a tile")
    decoded = offline.evaluate("() => [...document.querySelectorAll('button.thumb img')]"
                               ".filter(i => i.complete && i.naturalWidth > 0).length")
    assert decoded == exported  # real thumbnails, inline
