"""Compare runs and Training curves in a real browser over real paintings, by the user's gestures: switch the
disagreements on Compare and see the URL keep the choice (a reload restores it) with every matrix labelled in full;
add a run in the Curves picker and see every chart take it in."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest

from tests.browser import open_page, shot, wait_for_app
from tests.conftest import sql

pytestmark = pytest.mark.browser

HEAD, TWO = "wikiart-mini/lite0-head", "wikiart-mini/lite0-two-stage"


def runs_query(*run_ids: str) -> str:
    return "&".join(f"runs={quote(r, safe='')}" for r in run_ids)


def chart_ticks(page, index: int, axis: str) -> list[str]:
    """The tick labels the browser drew on one Plotly chart's x or y axis, once the chart is drawn (a wrapped
    label's lines joined; whitespace dropped, as `squeeze` drops it from the expected names)."""
    chart = page.locator("[data-testid='stPlotlyChart']").nth(index)
    chart.scroll_into_view_if_needed()
    chart.locator(f".{axis}tick text").first.wait_for()
    return [squeeze("".join(t.locator("tspan").all_text_contents()) or t.text_content() or "")
            for t in chart.locator(f".{axis}tick text").all()]


def squeeze(text: str) -> str:
    return "".join(text.split())


def legend(page, index: int) -> list[str]:
    chart = page.locator("[data-testid='stPlotlyChart']").nth(index)
    chart.locator(".legend .legendtext").first.wait_for()
    return chart.locator(".legend .legendtext").all_text_contents()


def test_compare_tab_stays_in_the_url_and_matrices_name_every_class(page, served):
    classes = [squeeze(label) for (label,) in sql(served.store, "SELECT label FROM run_labels WHERE run_id = ? "
                                                       "AND task = 'period' ORDER BY class_index", [HEAD])]
    open_page(page, served, f"compare?{runs_query(HEAD, TWO)}")
    page.get_by_text("Difference B − A").wait_for()
    metrics = page.locator("[data-testid='stDataFrame']").first  # the runs' scores, each with its 95 % interval
    metrics.scroll_into_view_if_needed()
    metrics.locator("[role='gridcell']").first.wait_for(state="attached", timeout=30_000)  # the grid has drawn
    cells = metrics.locator("[role='gridcell']").all_inner_texts()
    assert sum(bool(re.fullmatch(r"\d\.\d{3}\s±\s\d\.\d{3}", c)) for c in cells) >= 6, cells
    paired = page.get_by_text("paired bootstrap over the images")
    assert re.search(r"95 % interval of the difference −?\d+\.\d to −?\d+\.\d points: (not )?distinguishable",
                     paired.inner_text())
    for index in (1, 2, 3):  # A's matrix, B's, their difference: every class on both axes
        assert chart_ticks(page, index, "x") == classes
        assert chart_ticks(page, index, "y") == classes
    assert "B better" in page.locator("[data-testid='stPlotlyChart']").nth(3).inner_text()

    other = page.get_by_role("radio", name=re.compile(r"^B right, A wrong"))  # the segmented control's button
    assert other.get_attribute("aria-checked") == "false"
    other.click()
    page.wait_for_url(re.compile(r"side=ba"))
    wait_for_app(page)
    words = f"{TWO} right, {HEAD} wrong"
    page.get_by_text(words).first.wait_for()
    shot(page, "compare")
    page.reload()
    wait_for_app(page)
    assert "side=ba" in page.url
    assert other.get_attribute("aria-checked") == "true"  # the link restored the chosen side
    page.get_by_text(words).first.wait_for()


def test_curves_follow_the_runs_picked(page, served):
    open_page(page, served, f"curves?{runs_query(HEAD)}")
    page.get_by_text("Loss").first.wait_for()
    assert legend(page, 0) == [HEAD]
    assert all(int(t) >= 0 for t in chart_ticks(page, 0, "x"))  # the x-axis starts at the first epoch

    picker = page.locator("[data-testid='stMultiSelect']").first
    picker.locator("input").click()
    picker.locator("input").fill("two-stage")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    page.wait_for_url(re.compile(re.escape(quote(TWO, safe=""))))
    wait_for_app(page)
    page.wait_for_function("() => document.querySelector(\"[data-testid='stPlotlyChart'] .legend\")"
                           ".querySelectorAll('.legendtext').length === 2")
    assert sorted(legend(page, 0)) == sorted([HEAD, TWO])
    assert "head → finetune" in page.locator("[data-testid='stPlotlyChart']").nth(0).inner_text()
    assert all(int(t) >= 0 for t in chart_ticks(page, 0, "x"))
    shot(page, "curves")
