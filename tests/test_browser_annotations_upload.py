"""The two gestures that send something to the dashboard: an expert saves a verdict through the form, and a
user drops a painting on the Upload page. Real browser, real-painting store (tests/browser.py)."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect

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
    expect(page.get_by_text("Notes on this painting")).to_have_count(1)  # listed under the painting (once drawn)
    shot(page, "annotations-saved")


def listed(page) -> int:
    """How many annotations the page's list says it holds (waiting for the list: the page may still be drawing)."""
    none = page.get_by_text("No annotations yet.")
    some = page.get_by_text(re.compile(r"current annotations · times in UTC"))
    none.or_(some).first.wait_for(timeout=60_000)
    return 0 if none.count() else int(some.inner_text().split()[0].replace(",", ""))


def test_a_reviewer_uploads_a_verdicts_file_and_the_list_grows(served, page, tmp_path):
    from tests.test_annotations_import import row, verdicts_csv

    run_id, image_id, content_hash = sql(served.store, """
        SELECT p.run_id, p.image_id, i.content_hash FROM predictions p JOIN runs r USING (run_id)
        JOIN images i ON i.dataset_id = r.dataset_id AND i.image_id = p.image_id
        WHERE p.split = 'test' AND NOT p.correct ORDER BY p.run_id, p.image_id LIMIT 1""")[0]
    reviewer = f"Importer {uuid.uuid4().hex[:6]}"
    file = tmp_path / "my-verdicts.csv"
    file.write_bytes(verdicts_csv([
        row(image_id, "label wrong", "=looks 1650s", reviewer=reviewer, run=run_id, content_hash=content_hash,
            export=uuid.uuid4().hex),
        row(image_id, "no idea", reviewer=reviewer, run=run_id, content_hash=content_hash)]))
    open_page(page, served, "annotations")
    before = listed(page)
    page.get_by_text("Import verdicts from an exported gallery").click()
    page.locator("input[type='file']").set_input_files(str(file))
    page.get_by_text("1 added, 0 already there, 1 skipped").wait_for(timeout=60_000)
    wait_for_app(page)
    assert page.get_by_text("row 3: unknown verdict 'no idea'").count() == 1
    assert listed(page) == before + 1
    assert sql(served.store, "SELECT verdict, note FROM annotations WHERE author = ?", [reviewer]) == [
        ("label wrong", "=looks 1650s")]
    page.get_by_text("1 added, 0 already there, 1 skipped").scroll_into_view_if_needed()
    shot(page, "annotations-imported", full_page=False)


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
