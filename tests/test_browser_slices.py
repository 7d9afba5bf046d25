"""The Slices page in a real browser on real paintings, by the user's gestures: open it from the sidebar, follow the
worst slice's link into the Errors gallery (which then shows only that slice's wrong predictions), and save a slice
by picking its values, typing a name and clicking save, then read it across every run.

Its own server over a private copy of the real store, to which tests/test_slices.py's add_slice_metadata adds
artists, dates, widths and a near-copy group (the manifest of real paintings has none of them).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import expect

from tests.browser import Served, open_page, shot, start_server, stop, wait_for_app
from tests.conftest import copy_store, sql
from tests.test_slices import add_slice_metadata

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def sliced(real_store, tmp_path_factory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("slices-page")
    store = copy_store(real_store, folder / "store")
    add_slice_metadata(store)
    server, url = start_server(store, folder / "server.log")
    try:
        yield Served(url, store)
    finally:
        stop(server)


def follow(page, link):
    """Click a Markdown link the way a user does (Streamlit may open it in a new tab); the page it shows."""
    if link.get_attribute("target") == "_blank":
        with page.context.expect_page() as opened:
            link.click()
        return opened.value
    link.click()
    return page


def test_open_from_the_sidebar_then_follow_the_worst_slice_into_its_gallery(page, sliced):
    open_page(page, sliced, "")
    page.locator("[data-testid='stSidebarNav']").get_by_text("Slices", exact=True).click()
    page.locator("[data-testid='stMain'] h1").filter(has_text="Slices").wait_for(timeout=60_000)
    wait_for_app(page)
    main = page.locator("[data-testid='stMain']")
    expect(main.get_by_text("Where this run fails")).to_be_visible()
    shot(page, "slices-finder")

    link = main.get_by_role("link", name=re.compile(r"^\d+ errors$")).first
    href = link.get_attribute("href") or ""
    errors = int((link.inner_text()).split()[0])
    asked = parse_qs(urlparse(href).query)
    run_id, split, [within] = asked["run"][0], asked["split"][0], asked["within"]
    gallery = follow(page, link)
    gallery.wait_for_url("**/errors?*", timeout=30_000)
    wait_for_app(gallery)
    expect(gallery.locator("h3").filter(has_text="images").first).to_have_text(f"{errors:,} images", timeout=30_000)
    dimension, value = within.split(":", 1)
    expect(gallery.get_by_text(re.compile(rf"slice: .*{re.escape(value)}"))).to_be_visible()
    assert parse_qs(urlparse(gallery.url).query)["within"] == [within]
    # fewer than all the run's wrong predictions on the split: the gallery shows only the slice's
    [(every_error,)] = sql(sliced.store, """SELECT count(*) FROM predictions WHERE run_id = ? AND split = ?
                                            AND task = 'period' AND NOT correct""", [run_id, split])
    assert 0 < errors < every_error
    expect(gallery.locator("[data-testid='stImage']")).to_have_count(min(errors, 24), timeout=30_000)


def test_save_a_slice_by_name_then_read_it_across_every_run(page, sliced):
    open_page(page, sliced, "slices")
    main = page.locator("[data-testid='stMain']")
    main.get_by_text("Make a slice").wait_for(timeout=60_000)
    picker = main.locator("[data-testid='stMultiSelect']").filter(has_text="Images in the slice")
    picker.click()
    page.keyboard.type("1550")
    page.get_by_role("option", name=re.compile("1550–1599")).click()
    page.keyboard.press("Escape")
    wait_for_app(page)
    main.get_by_label("Name of the slice").fill("Late sixteenth century")
    main.get_by_role("button", name="Save slice").click()
    wait_for_app(page)
    page.wait_for_url(re.compile(r"slice=late-sixteenth-century"), timeout=30_000)
    expect(main.get_by_text("Late sixteenth century").first).to_be_visible()
    table = main.locator("table").filter(has_text="run's accuracy on all").first
    for (run_id,) in sql(sliced.store, "SELECT run_id FROM runs"):
        expect(table).to_contain_text(run_id)
    counts = sql(sliced.store, """SELECT p.run_id, count(*) FROM predictions p JOIN images i USING (image_id)
                                  WHERE p.split = 'test' AND p.task = 'period' AND i.date IN ('1574-88')
                                  GROUP BY 1""")
    for run_id, n in counts:
        expect(table.locator("tr").filter(has_text=run_id)).to_contain_text(f"of {n}")
    shot(page, "slices-saved")
