"""The SQL page by the user's gestures: an example button fills, runs and shares its query; the limits hold."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlparse

import pytest

from dashboard.queries import sql_console
from tests.browser import open_page, shot, wait_for_app
from tests.conftest import sql

pytestmark = pytest.mark.browser

ALERT = "[data-testid='stAlert']"


def run_typed(page, text: str, answer: re.Pattern) -> tuple[str, float]:
    """Type `text` into the editor, press Run, wait for an alert matching `answer`: its text, and the seconds taken."""
    page.get_by_label("Query").fill(text)
    started = time.monotonic()
    page.get_by_role("button", name="Run").click()
    alert = page.locator(ALERT).filter(has_text=answer).first
    alert.wait_for(timeout=60_000)
    return alert.inner_text(), time.monotonic() - started


def test_an_example_button_fills_runs_and_shares_its_query(served, page):
    open_page(page, served, "sql")
    button = page.get_by_role("button", name="Most confused period pairs")
    for name in sql_console.EXAMPLES:  # every label whole: none cut off with an ellipsis
        label = page.get_by_role("button", name=name).locator("p")
        assert label.evaluate("e => e.scrollWidth <= e.clientWidth"), f"label cut off: {name}"
    button.click()
    rows = page.locator("[data-testid='stCaptionContainer']").filter(has_text="rows ·")
    rows.or_(page.locator(ALERT)).first.wait_for(timeout=60_000)
    wait_for_app(page)
    assert page.locator(ALERT).count() == 0, page.locator(ALERT).first.inner_text()
    expected = sql(served.store, sql_console.EXAMPLES["Most confused period pairs"])
    assert page.get_by_text(f"{len(expected):,} rows ·").count() == 1
    assert page.get_by_label("Query").input_value() == sql_console.EXAMPLES["Most confused period pairs"]
    assert parse_qs(urlparse(page.url).query)["q"] == [sql_console.EXAMPLES["Most confused period pairs"]]
    shot(page, "sql-example")


def test_hostile_queries_stop_within_the_advertised_limit(served, page):
    """`repeat('x', 2000000000)` ran 9.2 s against the page's 5 s: it is refused at once now, and a query stuck
    inside one function call is stopped at the limit, counted from the click."""
    open_page(page, served, "sql")
    alert, seconds = run_typed(page, "SELECT repeat('x', 2000000000)", re.compile("memory limit|time limit"))
    assert f"memory limit ({sql_console.MEMORY_LIMIT})" in alert or "time limit" in alert, alert
    assert seconds < sql_console.TIME_LIMIT_S + 1.5

    page.wait_for_timeout(2000)  # the time a person takes to type the next query (the next worker starts)
    stuck = "SELECT md5(repeat('x', 700000000))"  # one function call: left to finish, 19 s
    alert, seconds = run_typed(page, stuck, re.compile("time limit"))
    assert f"time limit ({sql_console.TIME_LIMIT_S:g} s)" in alert
    assert seconds < sql_console.TIME_LIMIT_S + 2.0  # 9.2 s before; the limit and Streamlit's round trip
