"""The shared dashboard in a real browser: a password gate before any store data, a filtered link that survives it,
a viewer who cannot annotate, and five reviewers saving at the same time.

Its own server (one for the file) over a copy of the real-painting store, with a reviewer and a viewer password in
the environment and the toolbar in viewer mode, as `make share` serves it; one chromium for the session.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, quote, urlparse

import pytest
from playwright.sync_api import expect

from tests.browser import DESKTOP, Served, no_exception, shot, start_server, stop, wait_for_app
from tests.conftest import copy_store, sql

pytestmark = pytest.mark.browser

REVIEWER, VIEWER = "reviewer-pass-7d1", "viewer-pass-4c9"


@pytest.fixture(scope="module")
def shared(real_store, tmp_path_factory) -> Iterator[Served]:
    """A dashboard served as `make share` serves it, over a private copy of the real store (its writes stay here)."""
    folder = tmp_path_factory.mktemp("shared")
    store = copy_store(real_store, folder / "store")
    server, url = start_server(store, folder / "server.log", {
        "PERIODEYE_REVIEWER_PASSWORD": REVIEWER, "PERIODEYE_VIEWER_PASSWORD": VIEWER,
        "STREAMLIT_CLIENT_TOOLBAR_MODE": "viewer"})  # --client.toolbarMode viewer, as --share sets it
    try:
        yield Served(url, store)
    finally:
        stop(server)


def goto(page, served: Served, path: str) -> None:
    page.goto(f"{served.url}/{path.lstrip('/')}")
    wait_for_app(page)
    no_exception(page)


def log_in(page, password: str, name: str = "") -> None:
    """Type into the gate's form and press Enter (the first script run may still be drawing it)."""
    field = page.get_by_label("Password", exact=True)
    field.wait_for(timeout=60_000)
    assert page.get_by_role("button", name="Enter").count() == 1
    field.fill(password)
    if name:
        page.get_by_label("Name (reviewers: signs your verdicts)").fill(name)
    page.get_by_role("button", name="Enter").click()
    wait_for_app(page)


def store_words(store: Path) -> list[str]:
    """Strings only the store knows: run ids, periods, image ids and content hashes."""
    rows = sql(store, """SELECT run_id FROM runs UNION SELECT DISTINCT period FROM images
        UNION SELECT image_id FROM images UNION SELECT content_hash FROM images WHERE content_hash IS NOT NULL""")
    return [r[0] for r in rows]


def test_a_wrong_password_sees_nothing_from_the_store(shared, page):
    frames: list[bytes] = []
    media: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda f: frames.append(f if isinstance(f, bytes)
                                                                                   else f.encode())))
    page.on("request", lambda r: media.append(r.url) if urlparse(r.url).path.startswith("/media/") else None)
    goto(page, shared, "errors")
    log_in(page, REVIEWER + "x", "Someone")
    expect(page.get_by_text("Password incorrect")).to_be_visible()
    assert page.get_by_text("Errors", exact=True).count() == 0  # not even the menu
    html, received = page.content(), b"".join(frames)
    assert len(frames) > 3 and html
    leaked = [w for w in store_words(shared.store) if w in html or w.encode() in received]
    assert leaked == [] and media == []
    assert REVIEWER not in page.url
    shot(page, "share-gate-wrong")


def test_a_filtered_link_opens_the_same_view_after_the_password(shared, page):
    run = sql(shared.store, "SELECT run_id FROM runs ORDER BY test_accuracy DESC, run_id LIMIT 1")[0][0]
    true, pred, n = sql(shared.store, """SELECT true_label, pred_label, count FROM confusion WHERE run_id = ?
        AND task = 'period' AND split = 'test' AND true_label <> pred_label ORDER BY count DESC LIMIT 1""", [run])[0]
    link = f"errors?run={quote(run)}&outcome=all&true={quote(true)}&pred={quote(pred)}"
    goto(page, shared, link)
    log_in(page, REVIEWER, "A. Historian")
    no_exception(page)
    expect(page.get_by_role("heading", name=f"{n:,} images")).to_be_visible()
    params = parse_qs(urlparse(page.url).query)
    assert params["run"] == [run] and params["true"] == [true] and params["pred"] == [pred]
    assert page.get_by_text("A. Historian (reviewer)").count() == 1
    shot(page, "share-link-opened")


def test_a_viewer_cannot_annotate_and_has_no_developer_menu(shared, page):
    goto(page, shared, "annotations")
    log_in(page, VIEWER)
    no_exception(page)
    expect(page.get_by_role("heading", name="Annotations", exact=True)).to_be_visible()
    assert page.get_by_text("Signed in: viewer").count() == 1
    assert page.get_by_role("button", name="Save annotation").count() == 0
    assert page.locator("[data-testid='stAppDeployButton']").count() == 0
    page.locator("[data-testid='stMainMenu']").click()
    menu = page.locator("[data-testid='stMainMenuPopover']")
    menu.wait_for()
    assert menu.get_by_text("Clear cache").count() == 0 and menu.get_by_text("Rerun").count() == 0
    shot(page, "share-viewer-menu", full_page=False)


def test_five_reviewers_annotate_at_once_and_see_each_other(shared, browser):
    contexts = [browser.new_context(viewport=DESKTOP) for _ in range(5)]
    try:
        pages = [c.new_page() for c in contexts]
        tag = uuid.uuid4().hex[:6]
        notes = [f"{tag} reviewer {i}: the drapery" for i in range(5)]
        for tab in pages:  # five sessions load at once
            tab.goto(f"{shared.url}/annotations", wait_until="commit")
        for i, tab in enumerate(pages):
            log_in(tab, REVIEWER, f"Reviewer {i}")
            # the form's radio (the list below may hold earlier "label wrong" verdicts of the session's store)
            tab.get_by_test_id("stRadioGroup").first.get_by_text("label wrong", exact=True).click()
            tab.get_by_label("Note").fill(notes[i])
            expect(tab.get_by_label("Your name")).to_have_value(f"Reviewer {i}")  # the name given at the gate
        for tab in pages:  # five saves in flight together: each click returns once sent
            tab.get_by_role("button", name="Save annotation").click(no_wait_after=True)
        for tab in pages:
            tab.get_by_text("Saved: label wrong on").wait_for(timeout=60_000)
        stored = sql(shared.store, "SELECT note, author FROM annotations WHERE note LIKE ? ORDER BY note", [f"{tag}%"])
        assert stored == [(note, f"Reviewer {i}") for i, note in enumerate(notes)]
        for tab in pages:  # a refresh is a new session: the password again, then everyone's notes
            tab.reload(wait_until="commit")
        for i, tab in enumerate(pages):
            log_in(tab, REVIEWER, f"Reviewer {i}")
            grid = tab.locator("[data-testid='stDataFrame']").first
            for note in notes:
                expect(grid.get_by_text(note)).to_have_count(1)
        shot(pages[0], "share-five-reviewers")
    finally:
        for c in contexts:
            c.close()
