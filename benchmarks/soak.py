"""Soak: the dashboard in real browsers while the pipeline writes (`make soak`; not in CI).

Three chromium sessions page through the dashboard and save annotations through the Annotations
page's own form, while two `python -m pipeline run --force` writers replace runs in the same store,
for --minutes. Prints page loads, failed loads (a traceback, an error box or a page that never
rendered: must be 0), annotation saves, and how long the writers waited for the lock.

    python -m benchmarks.soak [--minutes 5] [--store PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update"]
PAGES = ("", "errors?outcome=all", "compare", "inspector", "embedding", "curves", "sql", "annotations")
# Two small experiments on the demo collection (one dataset), so each writer replaces its own runs.
WRITERS = {
    "soak-a": [{"name": "head", "strategy": "head", "epochs": 1}],
    "soak-b": [{"name": "head-artist", "strategy": "head", "tasks": ["period", "artist"], "epochs": 1}],
}
DATA = {"source": "demo", "resize": 40, "crop": 32, "thumbnail_size": 48,
        "split": {"mode": "fractions", "val": 0.2, "test": 0.2, "seed": 0}}
DEFAULTS = {"backbone": "efficientnet_lite0", "lr": 0.01, "batch_size": 64, "projection": "pca"}
ATTRIBUTIONS = {"ig_steps": 4, "max_images": 8, "sanity_images": 2, "heatmap_size": 32}


def write_experiments(folder: Path) -> dict[str, Path]:
    paths = {}
    for name, runs in WRITERS.items():
        spec = {"name": name, "data": DATA, "defaults": DEFAULTS, "attributions": ATTRIBUTIONS, "runs": runs}
        paths[name] = folder / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(spec))
    return paths


def run_pipeline(experiment: Path, store: Path, force: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pipeline", "run", str(experiment), "--store", str(store), "--quiet"]
    return subprocess.run([*cmd, "--force"] if force else cmd, cwd=REPO_ROOT, capture_output=True, text=True)


def serve(store: Path, log: Path) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO_ROOT / "dashboard" / "Home.py"),
         "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=REPO_ROOT, env={**os.environ, "PERIODEYE_STORE": str(store)}, stdout=log.open("w"),
        stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        with contextlib.suppress(OSError):
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return server, url
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise SystemExit(f"streamlit did not start; see {log}")
        time.sleep(0.5)


def page_failure(page) -> str | None:
    """What went wrong on a loaded page (None when it rendered cleanly)."""
    for selector in ("[data-testid='stException']", "[data-testid='stAlertContentError']"):
        box = page.locator(selector)
        if box.count():
            return box.first.inner_text()[:300]
    return None


def settle(page) -> None:
    page.wait_for_selector("[data-testid='stApp']", timeout=60_000)
    page.wait_for_function("() => !document.querySelector(\"[data-testid='stStatusWidget']\")", timeout=60_000,
                           polling=250)
    page.wait_for_timeout(300)


def save_annotation(page, url: str, k: int) -> str | None:
    """Annotate the first candidate image the way a person does: pick a verdict, give a name, press Save."""
    page.goto(f"{url}/annotations")
    settle(page)
    form = page.locator("[data-testid='stForm']")
    form.get_by_text("ambiguous", exact=True).click()
    form.get_by_label("Your name").fill(f"soak {k}")
    form.get_by_role("button", name=re.compile("Save annotation")).click()
    try:
        page.get_by_text("Saved:").wait_for(timeout=60_000)
    except Exception:  # noqa: BLE001  (reported, not raised: the soak counts failures)
        return page_failure(page) or "the save was not confirmed"
    return None


def browse(url: str, stop: threading.Event, tally: dict, failures: list, session: int) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            i = 0
            while not stop.is_set():
                name = PAGES[(i + session) % len(PAGES)]
                i += 1
                try:
                    if name == "annotations" and session == 0:
                        problem = save_annotation(page, url, i)
                        tally["saves"] += problem is None
                    else:
                        page.goto(f"{url}/{name}")
                        settle(page)
                        problem = page_failure(page)
                except Exception as exc:  # noqa: BLE001
                    problem = f"{type(exc).__name__}: {str(exc)[:200]}"
                tally["loads"] += 1
                if problem:
                    failures.append(f"{name}: {problem}")
        finally:
            browser.close()


def write_loop(experiment: Path, store: Path, stop: threading.Event, tally: dict, failures: list) -> None:
    while not stop.is_set():
        done = run_pipeline(experiment, store, force=True)
        tally["writes"] += 1
        tally["waits"].extend(float(w) for w in re.findall(r"waited ([\d.]+)s for the lock", done.stderr))
        if done.returncode != 0:
            failures.append(f"writer {experiment.stem}: exit {done.returncode}: {done.stderr[-500:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--sessions", type=int, default=3)
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} not found: apt-get install -y chromium")
    work = Path(tempfile.mkdtemp(prefix="periodeye-soak-"))
    try:
        store = work / "store.duckdb"
        experiments = write_experiments(work)
        for experiment in experiments.values():  # the first runs, before anyone looks
            done = run_pipeline(experiment, store)
            if done.returncode != 0:
                raise SystemExit(done.stderr)
        server, url = serve(store, work / "server.log")
        stop = threading.Event()
        tally = {"loads": 0, "saves": 0, "writes": 0, "waits": []}
        failures: list[str] = []
        threads = [threading.Thread(target=browse, args=(url, stop, tally, failures, s)) for s in range(args.sessions)]
        threads += [threading.Thread(target=write_loop, args=(e, store, stop, tally, failures))
                    for e in experiments.values()]
        started = time.monotonic()
        try:
            for t in threads:
                t.start()
            time.sleep(args.minutes * 60)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=600)
            server.terminate()
            server.wait(timeout=30)
        waits = tally["waits"]
        print(f"soak: {time.monotonic() - started:.0f} s, {args.sessions} browser sessions, 2 writers")
        print(f"page loads: {tally['loads']}, failed: {len(failures)}, annotation saves: {tally['saves']}, "
              f"pipeline writes: {tally['writes']}, writer waits > 2 s: {len(waits)}"
              + (f" (longest {max(waits):.1f} s)" if waits else ""))
        for failure in failures[:20]:
            print("  FAILED", failure)
        return 1 if failures else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
