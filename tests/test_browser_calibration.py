"""The Calibration page in a real browser on real paintings, by the user's gestures: open it from the sidebar, pick
a run, and read its temperature, its calibration error before and after scaling, and the reliability diagram.

The session's real-painting store (tests/conftest.py's real_store) is made by the pipeline, so its runs are
calibrated by default: their temperatures are read back from the store to check what the page says.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import expect

from tests.browser import open_page, shot, wait_for_app
from tests.conftest import sql

pytestmark = pytest.mark.browser


def pick(page, box: str, option: str) -> None:
    """Choose an option of a select box as a user does: open it, type, click the option."""
    page.locator("[data-testid='stSelectbox']").filter(has_text=box).first.click()
    page.keyboard.type(option)
    page.get_by_role("option", name=option, exact=True).click()
    wait_for_app(page)


def test_open_from_the_sidebar_pick_a_run_and_read_its_reliability_diagram(page, served):
    open_page(page, served, "")
    page.locator("[data-testid='stSidebarNav']").get_by_text("Calibration", exact=True).click()
    page.locator("[data-testid='stMain'] h1").filter(has_text="Calibration").wait_for(timeout=60_000)
    wait_for_app(page)
    main = page.locator("[data-testid='stMain']")
    shown = parse_qs(urlparse(page.url).query)["run"][0]  # the best run, by default
    other = next(r for r, in sql(served.store, "SELECT run_id FROM runs WHERE evaluation_of IS NULL ORDER BY run_id")
                 if r != shown)
    pick(page, "Run", other)
    assert parse_qs(urlparse(page.url).query)["run"] == [other]

    [(t, n)] = sql(served.store, "SELECT temperature, n FROM calibration WHERE run_id = ? AND task = 'period'",
                   [other])
    expect(main.get_by_text(f"Temperature T = {t:.3f}")).to_be_visible()
    expect(main.get_by_text(f"fitted on {n:,} validation images", exact=False)).to_be_visible()
    ece = dict(sql(served.store, "SELECT metric, value FROM metrics WHERE run_id = ? AND split = 'test' "
                                 "AND task = 'period' AND metric LIKE 'ece%'", [other]))
    words = main.get_by_text(re.compile("Expected calibration error on the test split"))
    expect(words).to_contain_text(f"{ece['ece_uncalibrated']:.3f} before scaling, {ece['ece']:.3f} after")
    chart = main.locator("[data-testid='stPlotlyChart']")
    expect(chart).to_be_visible()
    expect(chart.locator(".legendtext").filter(has_text="before scaling")).to_have_count(1)
    expect(chart.locator(".legendtext").filter(has_text="after scaling")).to_have_count(1)
    expect(main.get_by_text("Images per bin")).to_be_visible()
    shot(page, "calibration")

    pick(page, "Split", "val")
    assert parse_qs(urlparse(page.url).query)["split"] == ["val"]
    expect(main.get_by_text(re.compile("Expected calibration error on the val split"))).to_be_visible()
