"""The two gestures that send something to the dashboard: an expert saves a verdict through the form, and a
user drops a painting on the Upload page. Real browser, real-painting store (tests/browser.py)."""

from __future__ import annotations

import uuid

import pytest

from tests.browser import images_rendered, open_page, shot, wait_for_app
from tests.conftest import sql

pytestmark = pytest.mark.browser


def test_an_expert_saves_a_verdict_through_the_form(served, page):
    open_page(page, served, "annotations")
    note = f"brushwork of the 1880s {uuid.uuid4().hex[:8]}"
    page.get_by_text("label wrong", exact=True).click()
    page.get_by_label("Note").fill(note)
    page.get_by_label("Your name").fill("A. Historian")
    page.get_by_role("button", name="Save annotation").click()
    wait_for_app(page)
    page.get_by_text("Saved: label wrong on").wait_for(timeout=30_000)
    stored = sql(served.store, "SELECT verdict, author FROM annotations WHERE note = ?", [note])
    assert stored == [("label wrong", "A. Historian")]
    assert page.get_by_text("Notes on this painting").count() == 1  # the verdict is listed under the painting
    shot(page, "annotations-saved")


def test_a_dropped_painting_gets_probabilities_and_maps(served, page, shared_datasets):
    open_page(page, served, "upload")
    painting = next((shared_datasets / "wikiart-styles" / "Baroque").glob("*.jpg"))
    page.locator("input[type='file']").set_input_files(str(painting))
    page.get_by_text("What the network looked at for").wait_for(timeout=180_000)
    wait_for_app(page)
    assert page.get_by_text("your upload").count() == 1
    page.wait_for_function("() => document.querySelectorAll(\"[data-testid='stImage'] img\").length >= 4",
                           timeout=60_000)
    assert images_rendered(page) >= 4  # the upload and one overlay per stored method
    assert page.locator(".js-plotly-plot").count() == 1  # the period probabilities
    shot(page, "upload-explained")
