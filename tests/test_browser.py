"""One real browser over the real dashboard: Debian's chromium driven by playwright.

Starts `streamlit run dashboard/Home.py` on 127.0.0.1 over a real store, opens Overview and
Errors, changes a filter, checks that thumbnails render, and saves screenshots under
artifacts/screenshots/ (git-ignored), or $PERIODEYE_SCREENSHOTS: `make screenshots` writes the README's
docs/*.png from the store `make artifacts` wrote. Everything it starts, it stops.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(os.environ.get("PERIODEYE_SCREENSHOTS") or REPO_ROOT / "artifacts" / "screenshots")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dashboard(demo_store, tmp_path_factory):
    """The dashboard served on 127.0.0.1 (the store: $PERIODEYE_SCREENSHOT_STORE or the demo fixture)."""
    store = os.environ.get("PERIODEYE_SCREENSHOT_STORE") or str(demo_store)
    port = free_port()
    env = {**os.environ, "PERIODEYE_STORE": store}
    log = open(tmp_path_factory.mktemp("streamlit") / "server.log", "w")  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO_ROOT / "dashboard" / "Home.py"),
         "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"streamlit did not start; see {log.name}") from None
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        msg = f"{CHROMIUM} not found: `apt-get install -y chromium` (.ci/run does)"
        if os.environ.get("PERIODEYE_REQUIRE_SHARED") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def wait_for_app(page) -> None:
    """Streamlit renders after the websocket connects and the script runs: wait until it is idle."""
    page.wait_for_selector("[data-testid='stApp']", timeout=60_000)
    page.wait_for_function(
        "() => !document.querySelector(\"[data-testid='stStatusWidget']\")", timeout=60_000, polling=250
    )
    page.wait_for_timeout(500)


def no_exception(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0, page.locator(
        "[data-testid='stException']").first.inner_text()


def images_rendered(page) -> int:
    """How many gallery thumbnails actually decoded (naturalWidth > 0)."""
    return page.evaluate(
        "() => [...document.querySelectorAll(\"[data-testid='stImage'] img\")]"
        ".filter(i => i.complete && i.naturalWidth > 0).length"
    )


def test_overview_and_errors_in_a_real_browser(dashboard, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{dashboard}/overview")
    wait_for_app(page)
    page.locator("[data-testid='stMetric']").first.wait_for(timeout=60_000)
    wait_for_app(page)
    assert page.locator("[data-testid='stMetric']").count() == 4
    assert page.locator("[data-testid='stSidebarNav']").get_by_text("Errors", exact=True).count() == 1
    no_exception(page)
    page.screenshot(path=str(SHOTS / "overview.png"), full_page=True)

    page.goto(f"{dashboard}/errors?outcome=all")
    wait_for_app(page)
    heading = page.locator("h3").filter(has_text="images").first
    heading.wait_for(timeout=30_000)
    before = heading.inner_text()
    page.wait_for_function(
        "() => [...document.querySelectorAll(\"[data-testid='stImage'] img\")]"
        ".some(i => i.complete && i.naturalWidth > 0)", timeout=30_000)
    assert images_rendered(page) > 0

    # change a filter in the sidebar: show only the wrong predictions
    box = page.locator("[data-testid='stSelectbox']").filter(has_text="Predictions")
    box.click()
    page.get_by_role("option", name="wrong", exact=True).click()
    page.wait_for_function(f"() => ![...document.querySelectorAll('h3')].some(h => h.innerText === {before!r})",
                           timeout=30_000)
    wait_for_app(page)
    assert "outcome=wrong" in page.url
    after = page.locator("h3").filter(has_text="images").first.inner_text()
    assert after != before
    assert images_rendered(page) > 0
    no_exception(page)
    page.screenshot(path=str(SHOTS / "errors.png"), full_page=True)

    # the inspector of the first image of the gallery
    page.locator("a", has_text="inspect").first.click()
    page.wait_for_url("**/inspector?*", timeout=30_000)
    wait_for_app(page)
    page.get_by_text("What the networks looked at").wait_for(timeout=30_000)
    wait_for_app(page)
    overlays = page.get_by_text("integrated gradients")  # absent when this image has no stored maps
    target = overlays.first if overlays.count() else page.get_by_text("What the networks looked at")
    target.scroll_into_view_if_needed()
    page.wait_for_timeout(1500)
    no_exception(page)
    page.screenshot(path=str(SHOTS / "inspector.png"))
    page.close()

