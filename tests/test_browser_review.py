"""Review mode on the Annotations page (`review=1`): a verdict button saves and moves to the next painting of the
Errors filter. Real browser, real-painting store (tests/browser.py)."""

from __future__ import annotations

import re
import uuid
from urllib.parse import quote, urlencode

import pytest

from tests.browser import open_page, shot, wait_for_app
from tests.conftest import sql

pytestmark = pytest.mark.browser


def position(page) -> tuple[int, int]:
    text = page.get_by_text(re.compile(r"^\d+ of \d+$")).first.inner_text()
    at, total = re.findall(r"\d[\d,]*", text)
    return int(at.replace(",", "")), int(total.replace(",", ""))


def test_a_verdict_button_saves_and_moves_to_the_next_painting(served, page):
    reviewer = f"Reviewer {uuid.uuid4().hex[:6]}"
    open_page(page, served, "errors?outcome=wrong")  # the Errors page's wrong predictions: what there is to review
    errors = int(page.get_by_role("heading", name=re.compile(r"^\d+ images$")).inner_text().split()[0])
    page.get_by_role("link", name="Review these one by one").click()
    wait_for_app(page)
    page.get_by_text("The model's guess:").wait_for(timeout=30_000)
    assert "review=1" in page.url and "outcome=wrong" in page.url
    at, total = position(page)
    assert at == 1 and total == errors > 1
    first = re.search(r"image=([^&]+)", page.url).group(1)
    page.get_by_label("Your name").fill(reviewer)
    page.get_by_role("button", name="outside its period", exact=True).click()
    wait_for_app(page)
    page.get_by_text(re.compile(r"^2 of \d+$")).wait_for(timeout=30_000)
    assert position(page) == (2, total)
    assert page.get_by_text("Saved: outside its period on").count() == 1
    assert re.search(r"image=([^&]+)", page.url).group(1) != first
    stored = sql(served.store, "SELECT verdict FROM annotations WHERE author = ?", [reviewer])
    assert stored == [("outside its period",)]
    shot(page, "annotations-review")
    open_page(page, served, "annotations?" + urlencode({"author": reviewer}, quote_via=quote))
    page.get_by_text("1 current annotations").wait_for(timeout=30_000)  # the list: this reviewer's one verdict
    assert page.get_by_text("1 current annotations").count() == 1
