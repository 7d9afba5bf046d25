"""The label audit in the Errors gallery, by the user's gestures in a real browser on real paintings: the sort
"most likely mislabelled" puts the lowest label quality first, and the outcome "flagged label issues" shows the
flagged paintings, each tile saying so."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from playwright.sync_api import expect

from tests.browser import open_page, shot, wait_for_app
from tests.test_browser_errors import COUNT, best_run, one, shown_count

pytestmark = pytest.mark.browser


def pick(page, box: str, option: str) -> None:
    """Open the select box and type the option, as a user can: the list shows only the options that fit, and the
    wanted one may be out of sight (it was once in CI)."""
    page.locator("[data-testid='stSelectbox']").filter(has_text=box).click()
    page.keyboard.type(option)
    page.get_by_role("option", name=option, exact=True).click()


def test_sort_by_likely_mislabelled_then_show_flagged_labels(page, served):
    run = best_run(served)
    lowest = one(served.store, """SELECT p.image_id, p.true_label, p.pred_label FROM predictions p
        JOIN runs r ON r.run_id = p.run_id JOIN label_quality lq ON lq.dataset_id = r.dataset_id
        AND lq.image_id = p.image_id WHERE p.run_id = ? AND p.task = 'period' AND p.split = 'test'
        ORDER BY lq.quality, p.confidence DESC, p.image_id LIMIT 1""", [run])[0]
    flagged = one(served.store, """SELECT count(*) FROM predictions p JOIN runs r ON r.run_id = p.run_id
        JOIN label_quality lq ON lq.dataset_id = r.dataset_id AND lq.image_id = p.image_id
        WHERE p.run_id = ? AND p.task = 'period' AND p.split = 'test' AND lq.issue""", [run])[0][0]
    assert flagged > 0

    open_page(page, served, f"errors?run={quote(run)}&outcome=all")
    first_link = page.get_by_role("link", name="inspect", exact=True).first
    expect(first_link).not_to_have_attribute("href", re.compile(re.escape(quote(lowest[0], safe=""))))
    pick(page, "Sort", "most likely mislabelled")
    page.wait_for_url(re.compile(r"[?&]sort=most"), timeout=30_000)
    wait_for_app(page)
    expect(first_link).to_have_attribute("href", re.compile(re.escape(quote(lowest[0], safe=""))))
    expect(page.get_by_text(f"{lowest[1]} → {lowest[2]}").first).to_be_visible()

    pick(page, "Predictions", "flagged label issues")
    page.wait_for_url(re.compile(r"[?&]outcome=flagged"), timeout=30_000)
    wait_for_app(page)
    expect(page.get_by_role("heading").filter(has_text=COUNT)).to_have_text(f"{flagged:,} images")
    assert shown_count(page) == flagged
    expect(page.get_by_text("label doubtful: quality")).to_have_count(min(flagged, 24))  # every tile on the page
    expect(page.get_by_text("No label audit")).to_have_count(0)
    shot(page, "errors-flagged-labels")
