"""The browser suite's shared parts: one dashboard server and one chromium per session, a fresh page per test.

The server runs `streamlit run dashboard/Home.py` on 127.0.0.1 over the `real_store` fixture (real paintings)
or over $PERIODEYE_SCREENSHOT_STORE when set (`make screenshots`). Tests perform the user's gesture and assert
what the user then sees; `shot` saves each page at desktop and phone width under artifacts/screenshots/
(git-ignored) or $PERIODEYE_SCREENSHOTS. Everything started here is stopped here.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update"]
DESKTOP = {"width": 1400, "height": 1000}
PHONE = {"width": 390, "height": 844}


def shots_dir() -> Path:
    return Path(os.environ.get("PERIODEYE_SCREENSHOTS") or REPO_ROOT / "artifacts" / "screenshots")


@dataclass(frozen=True)
class Served:
    """The running dashboard: `url` without a trailing slash, and the store it reads."""

    url: str
    store: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(store: Path, log_path: Path, settings: dict[str, str] | None = None
                 ) -> tuple[subprocess.Popen, str]:
    """`streamlit run` over `store` with environment `settings` added; returns once /_stcore/health answers (or
    raises, naming the log). Passwords in the developer's own environment stay out: no gate unless a test sets one."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_PASSWORD")}
    env.update(settings or {}, PERIODEYE_STORE=str(store))
    log = log_path.open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO_ROOT / "dashboard" / "Home.py"),
         "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    log.close()  # the child holds its own descriptor
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return server, url
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                stop(server)
                raise RuntimeError(f"streamlit did not start; see {log_path}") from None
            time.sleep(0.5)


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@pytest.fixture(scope="session")
def served(request, tmp_path_factory) -> Iterator[Served]:
    """The dashboard served once per session over the real-painting store ($PERIODEYE_SCREENSHOT_STORE wins)."""
    given = os.environ.get("PERIODEYE_SCREENSHOT_STORE")
    store = Path(given) if given else request.getfixturevalue("real_store")
    server, url = start_server(store, tmp_path_factory.mktemp("streamlit") / "server.log")
    try:
        yield Served(url, store)
    finally:
        stop(server)


@pytest.fixture(scope="session")
def browser():
    """One headless chromium for the session (Debian's, driven by playwright)."""
    if not Path(CHROMIUM).exists():
        msg = f"{CHROMIUM} not found: `apt-get install -y chromium` (.ci/run does)"
        if os.environ.get("PERIODEYE_REQUIRE_SHARED") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    """A fresh browser context (no cookies, no cache) at 1400x1000, closed after the test."""
    context = browser.new_context(viewport=DESKTOP)
    tab = context.new_page()
    try:
        yield tab
    finally:
        context.close()


def wait_for_app(page) -> None:
    """Streamlit renders after the websocket connects and the script runs: wait until it is idle. The status widget
    is absent both before the first run starts and after it ends, so also wait for the app's own script state to
    leave `initial` (as Streamlit's e2e tests do): a slow machine otherwise reads the page before it is drawn."""
    page.wait_for_selector("[data-testid='stApp'][data-test-connection-state='CONNECTED']", timeout=60_000)
    page.wait_for_selector(
        "[data-testid='stApp'][data-test-script-state='notRunning']", timeout=60_000, state="attached"
    )
    page.wait_for_function(
        "() => !document.querySelector(\"[data-testid='stStatusWidget']\")", timeout=60_000, polling=250
    )
    page.wait_for_timeout(500)


def open_page(page, served: Served, path: str) -> None:
    """Go to `path` (e.g. "errors?outcome=all") and wait until the app is idle with no exception."""
    page.goto(f"{served.url}/{path.lstrip('/')}")
    wait_for_app(page)
    no_exception(page)


def no_exception(page) -> None:
    """No traceback on the page, and no "Page not found" dialog (a link to a page that does not exist)."""
    errors = page.locator("[data-testid='stException']")
    assert errors.count() == 0, errors.first.inner_text()
    assert page.get_by_text("Page not found").count() == 0, f"no such page: {page.url}"


def outside_requests(page) -> list[str]:
    """A list that fills with every URL the page asks of a host other than the local server (the dashboard must
    work offline: no fonts, icons or scripts from the internet)."""
    from urllib.parse import urlparse

    seen: list[str] = []

    def note(request) -> None:
        url = urlparse(request.url)
        if url.scheme in ("http", "https", "ws", "wss") and url.hostname not in ("127.0.0.1", "localhost"):
            seen.append(request.url)

    page.on("request", note)
    return seen


def images_rendered(page) -> int:
    """How many images on the page actually decoded (naturalWidth > 0)."""
    return page.evaluate(
        "() => [...document.querySelectorAll(\"[data-testid='stImage'] img\")]"
        ".filter(i => i.complete && i.naturalWidth > 0).length"
    )


def settle(page) -> None:
    """Wait until what the script sent is drawn: no loading skeletons (charts load their code lazily), and every
    image in view decoded (a screenshot taken earlier shows grey boxes)."""
    page.wait_for_function(
        """() => !document.querySelector("[data-testid='stSkeleton'], [data-testid='stSkeletonElement']")
            && [...document.querySelectorAll("[data-testid='stImage'] img")]
               .filter(i => i.getBoundingClientRect().top < window.innerHeight)
               .every(i => i.complete && i.naturalWidth > 0)""",
        timeout=60_000, polling=250)
    page.wait_for_timeout(300)


def shot(page, name: str, full_page: bool = True) -> list[Path]:
    """Screenshots of the page as it is (`<name>.png`) and at phone width (`<name>-390.png`), then back.

    The page re-lays out at 390 px; it is given time to redraw its charts before the picture."""
    folder = shots_dir()
    folder.mkdir(parents=True, exist_ok=True)
    desktop, phone = folder / f"{name}.png", folder / f"{name}-390.png"
    settle(page)
    page.screenshot(path=str(desktop), full_page=full_page)
    size = page.viewport_size or DESKTOP
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(1500)
    wait_for_app(page)
    no_exception(page)
    settle(page)
    page.screenshot(path=str(phone), full_page=full_page)
    page.set_viewport_size(size)
    page.wait_for_timeout(500)
    return [desktop, phone]
