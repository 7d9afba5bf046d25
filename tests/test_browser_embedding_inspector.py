"""Embedding map and Inspector by the user's gestures, in chromium over the real-painting store: a lasso drag
lists the region's paintings and puts the region in the URL (a reload restores it); "next error" on the Inspector
shows the next painting of the Errors filter and moves the URL."""

from __future__ import annotations

import math
import re
from urllib.parse import parse_qs, urlparse

import pytest

from tests.browser import no_exception, open_page, shot, wait_for_app
from tests.conftest import sql

pytestmark = pytest.mark.browser

SELECTION = re.compile(r"Selection: ([\d,]+) images")


def selection_count(page) -> int:
    return int(SELECTION.search(page.get_by_text(SELECTION).inner_text()).group(1).replace(",", ""))


def lasso(page, share: float = 0.35) -> None:
    """Drag a closed loop around the middle of the map's plot area (the map opens with the lasso tool)."""
    area = page.locator(".stPlotlyChart .nsewdrag").first.bounding_box()
    cx, cy = area["x"] + area["width"] / 2, area["y"] + area["height"] / 2
    rx, ry = area["width"] * share, area["height"] * share
    page.mouse.move(cx + rx, cy)
    page.mouse.down()
    for k in range(1, 25):
        a = 2 * math.pi * k / 24
        page.mouse.move(cx + rx * math.cos(a), cy + ry * math.sin(a), steps=2)
    page.mouse.up()


def test_lasso_lists_the_region_and_keeps_it_in_the_url(served, page):
    run = sql(served.store, "SELECT min(run_id) FROM runs")[0][0]
    open_page(page, served, f"embedding?run={run}")
    page.locator(".stPlotlyChart .nsewdrag").first.wait_for()
    assert not page.get_by_text(SELECTION).count()
    lasso(page)
    page.get_by_text(SELECTION).wait_for(timeout=60_000)
    wait_for_app(page)
    n = selection_count(page)
    total = sql(served.store, "SELECT count(*) FROM embeddings WHERE run_id = ?", [run])[0][0]
    assert 0 < n < total
    region = parse_qs(urlparse(page.url).query).get("lasso", [""])[0]
    assert len(region.split(";")) >= 3  # the drawn loop, as corners
    picked = parse_qs(urlparse(page.url).query)["image"][0]
    page.get_by_text(picked, exact=True).first.wait_for(timeout=30_000)  # the picked painting beside the map, named
    shot(page, "embedding-lasso")

    link = page.url
    page.goto(link)  # the link alone brings the same selection back
    wait_for_app(page)
    no_exception(page)
    page.get_by_text(SELECTION).wait_for(timeout=60_000)
    assert selection_count(page) == n


def test_next_error_shows_the_next_painting_of_the_filter(served, page):
    run = sql(served.store, "SELECT min(run_id) FROM runs")[0][0]
    errors = [i for (i,) in sql(served.store, """SELECT image_id FROM predictions WHERE run_id = ? AND task = 'period'
                                               AND split = 'test' AND NOT correct
                                               ORDER BY confidence DESC, image_id LIMIT 2""", [run])]
    assert len(errors) == 2
    open_page(page, served, f"inspector?run={run}")
    assert parse_qs(urlparse(page.url).query)["image"] == [errors[0]]
    assert page.get_by_text(re.compile(r"^error 1 of \d+")).count()
    page.get_by_role("button", name=re.compile("next error")).click()
    page.wait_for_url(lambda url: parse_qs(urlparse(url).query).get("image") == [errors[1]], timeout=60_000)
    wait_for_app(page)
    no_exception(page)
    assert page.get_by_text(re.compile(r"^error 2 of \d+")).count()
    assert page.get_by_text(re.compile(r"predicted .*: (wrong|right)")).count()
    shot(page, "inspector-next")
