"""Every page in a real browser over real paintings (tests/browser.py: one server, one chromium per session).

Each page loads at desktop and phone width with no exception, and its screenshots go to artifacts/screenshots/
(git-ignored) or $PERIODEYE_SCREENSHOTS: `make screenshots` writes the README's docs/*.png this way. Then the
user's first walk: Overview, change a filter on Errors, open an image in the Inspector.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from tests.browser import images_rendered, open_page, outside_requests, shot, wait_for_app

pytestmark = pytest.mark.browser

# url path, the page's title (drawn once its script runs), screenshot name
PAGES = [
    ("", "Period Eye", "overview"),  # the default page has no path of its own
    ("errors?outcome=all", "Errors", "errors"),
    ("compare", "Compare runs", "compare"),
    ("inspector", "Inspector", "inspector"),
    ("embedding", "Embedding map", "embedding"),
    ("curves", "Training curves", "curves"),
    ("sql", "SQL", "sql"),
    ("annotations", "Annotations", "annotations"),
    ("data", "Data", "data"),
    ("calibration", "Calibration", "calibration"),
    ("slices", "Slices", "slices"),
    ("upload", "Upload", "upload"),
]


@pytest.mark.parametrize(("path", "title", "name"), PAGES, ids=[name for *_, name in PAGES])
def test_every_page_loads_on_real_paintings(served, page, path, title, name):
    outside = outside_requests(page)
    open_page(page, served, path)
    page.locator("[data-testid='stMain'] h1").filter(has_text=title).first.wait_for(timeout=60_000)
    wait_for_app(page)
    page.wait_for_timeout(1000)  # charts draw after the script ends
    for picture in shot(page, name):
        assert picture.stat().st_size > 10_000, picture
    assert outside == [], "the page fetched from the internet (it must work offline)"


def test_overview_then_errors_filter_then_inspector(served, page):
    open_page(page, served, "")
    page.locator("[data-testid='stMetric']").first.wait_for(timeout=60_000)
    wait_for_app(page)
    assert page.locator("[data-testid='stMetric']").count() == 4
    assert page.locator("[data-testid='stSidebarNav']").get_by_text("Errors", exact=True).count() == 1

    open_page(page, served, "errors?outcome=all")
    heading = page.locator("h3").filter(has_text="images").first
    heading.wait_for(timeout=30_000)
    before = heading.inner_text()
    page.wait_for_function(
        "() => [...document.querySelectorAll(\"[data-testid='stImage'] img\")]"
        ".some(i => i.complete && i.naturalWidth > 0)", timeout=30_000)
    assert images_rendered(page) > 0

    # the user changes a filter in the sidebar: only the wrong predictions
    page.locator("[data-testid='stSelectbox']").filter(has_text="Predictions").click()
    page.get_by_role("option", name="wrong", exact=True).click()
    page.wait_for_function(f"() => ![...document.querySelectorAll('h3')].some(h => h.innerText === {before!r})",
                           timeout=30_000)
    wait_for_app(page)
    assert "outcome=wrong" in page.url
    assert page.locator("h3").filter(has_text="images").first.inner_text() != before
    assert images_rendered(page) > 0

    # and opens the first image of the gallery (a tile's link, not the sidebar's Inspector): in a new tab
    link = page.get_by_role("link", name="inspect", exact=True).first
    wanted = parse_qs(urlparse(link.get_attribute("href") or "").query)["image"]
    with page.context.expect_page() as opened:
        link.click()
    inspector = opened.value
    inspector.wait_for_url("**/inspector?*", timeout=30_000)
    wait_for_app(inspector)
    inspector.get_by_text("What the networks looked at").wait_for(timeout=30_000)
    assert parse_qs(urlparse(inspector.url).query)["image"] == wanted
    inspector.close()


def test_the_chart_toolbar_leaves_titles_alone_at_phone_width(served, page):
    """At 390 px Plotly's toolbar covered the confusion matrix's title: on a narrow screen it is hidden (a touch
    screen has gestures); on a desktop it still shows on hover."""
    open_page(page, served, "errors")
    chart = page.locator(".js-plotly-plot").first
    chart.wait_for(timeout=60_000)
    chart.hover()
    page.wait_for_timeout(500)
    assert toolbar_shown(page)
    page.set_viewport_size({"width": 390, "height": 844})
    wait_for_app(page)
    chart.hover()
    page.wait_for_timeout(500)
    assert not toolbar_shown(page)


def toolbar_shown(page) -> bool:
    """Whether the first chart's Plotly toolbar is drawn (laid out and not transparent)."""
    return page.evaluate("""() => { const bar = document.querySelector('.js-plotly-plot .modebar');
        return !!bar && bar.getClientRects().length > 0 && getComputedStyle(bar).opacity !== '0'; }""")
