"""The Overview and the URL rule by the user's gesture, in a real browser over real paintings (tests/browser.py).

A link to a run that does not exist says so and lists the runs that do; the runs table shows every column at
1400 px; clicking a run's Errors link lands on that run's Errors page."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pytest

from dashboard.runs_table import ARTIST_SHOWN, COLUMNS, SHOWN
from tests.browser import open_page, shot, wait_for_app
from tests.conftest import sql

pytestmark = pytest.mark.browser


def run_ids(store) -> list[str]:
    return [r for (r,) in sql(store, "SELECT run_id FROM runs WHERE status = 'complete' ORDER BY run_id")]


def test_a_link_to_a_deleted_run_names_it_and_lists_the_runs(served, page):
    open_page(page, served, "errors?run=demo/deleted-run")
    alert = page.locator("[data-testid='stAlert']").filter(has_text="Not found")
    alert.wait_for(timeout=30_000)
    text = alert.inner_text()
    assert "run demo/deleted-run" in text
    assert all(run_id in text for run_id in run_ids(served.store))
    assert parse_qs(urlparse(page.url).query)["run"] == ["demo/deleted-run"]  # the link is not rewritten
    assert page.locator("h3").filter(has_text="images").count() == 0  # no other run's gallery in its place
    shot(page, "errors-unknown-run")


def link_position(table, column: str, row: int) -> tuple[float, float]:
    """Where the user sees the link of `column` in data row `row`: the table draws its columns at the widths
    dashboard/runs_table.py gives them (rows and header 35 px), on a canvas with no element per cell."""
    # the real-painting store has no evaluations and no artists (so no artist seen/unseen columns)
    shown = [c for c in SHOWN if c not in ("evaluation_of", *ARTIST_SHOWN)]
    left = sum(int(COLUMNS[c].get("width") or 0) for c in shown[:shown.index(column)])
    box = table.bounding_box()
    return box["x"] + left + 20, box["y"] + 35 * (row + 1) + 17


def test_overview_shows_every_column_and_a_runs_errors_link_opens_its_gallery(served, page):
    open_page(page, served, "")  # the Overview is the home page, at /
    table = page.locator("[data-testid='stDataFrame']").first
    table.locator("[role='gridcell']").first.wait_for(state="attached", timeout=30_000)  # the grid has drawn
    headers = table.locator("[role='columnheader']").all_inner_texts()
    assert headers == ["run", "model", "kept", "train min", "accuracy", "balanced", "macro-F1", "adjacent", "maps",
                       "errors", "curves", "compare"]
    # every column is in view at 1400 px: the table needs no sideways scrolling
    assert table.evaluate("t => { const s = t.querySelector('.dvn-scroller'); return s.scrollWidth <= s.clientWidth }")
    cells = table.locator("[role='gridcell']").all_inner_texts()  # each score with its 95 % interval
    scores = [c for c in cells if re.fullmatch(r"\d\.\d{2,3}\s±\s\d\.\d{2,3}", c)]
    assert len(scores) >= 3 * len(run_ids(served.store)), cells
    best_line = page.get_by_text("Best by test accuracy").inner_text()
    assert re.search(r"\d\.\d{3}\s±\s\d\.\d{3}", best_line), best_line
    first = table.locator("[role='gridcell']").first.inner_text()
    run_id = next(r for r in run_ids(served.store) if r.endswith(f"/{first}"))
    x, y = link_position(table, "errors", 0)
    page.mouse.move(x, y)  # the grid underlines the link under the pointer; the click then follows it
    page.wait_for_timeout(300)
    with page.context.expect_page(timeout=30_000) as opened:  # a link cell opens its page in a new tab
        page.mouse.click(x, y)
    errors = opened.value
    wait_for_app(errors)
    errors.locator("[data-testid='stMain'] h1").filter(has_text="Errors").wait_for(timeout=60_000)
    wait_for_app(errors)
    assert urlparse(errors.url).path == "/errors"
    assert parse_qs(urlparse(errors.url).query)["run"] == [run_id]
    picker = errors.locator("[data-testid='stSelectbox']").filter(has_text="Run").first
    picked = picker.evaluate("b => b.innerText + ' ' + [...b.querySelectorAll('input')].map(i => i.value).join(' ')")
    assert run_id in picked, picked
    shot(page, "overview-runs")
