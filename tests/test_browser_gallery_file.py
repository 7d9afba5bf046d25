"""The exported gallery opened from disk in a real browser, as an art historian receives it: no request leaves the
page, a tap on a painting shows its saliency maps, verdicts and a note survive a reload, and "Download my verdicts"
writes the periodeye-verdicts/1 CSV (one row per judged painting), which the Annotations page imports once."""

from __future__ import annotations

import csv
import io
import json
import re
from urllib.parse import urlparse

import duckdb
import pytest
from playwright.sync_api import expect

from tests.browser import PHONE, open_page, shots_dir, wait_for_app
from tests.conftest import sql
from tests.test_browser_annotations_upload import listed

pytestmark = pytest.mark.browser

HEADER = ["format", "export_id", "run_id", "image_id", "content_hash", "verdict", "note", "reviewer", "time",
          "corrected_period"]


def pictures(page, name: str) -> None:
    """The file as it looks at 1400 px and at phone width (not a Streamlit page: tests.browser.shot waits for one)."""
    folder = shots_dir()
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"))
    size = page.viewport_size
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(300)
    page.screenshot(path=str(folder / f"{name}-390.png"))
    page.set_viewport_size(size)


def test_verdicts_given_in_the_file_survive_a_reload_and_download_as_the_agreed_csv(page, served, tmp_path,
                                                                                  monkeypatch):
    from dashboard.export import errors_export, export_name, filter_slug, gallery_file
    from dashboard.queries.gallery import GalleryFilter

    with duckdb.connect(str(served.store), read_only=True) as con:
        run_id = con.execute("""SELECT run_id FROM runs WHERE run_id IN (SELECT run_id FROM attributions)
                                ORDER BY test_accuracy DESC, run_id LIMIT 1""").fetchone()[0]
        hashes = dict(con.execute("""SELECT i.image_id, i.content_hash FROM images i JOIN runs r USING (dataset_id)
                                     WHERE r.run_id = ?""", [run_id]).fetchall())
    monkeypatch.setenv("PERIODEYE_STORE", str(served.store))
    f = GalleryFilter(run_id, "test", outcome="all")
    made, tiles = errors_export(f, 500)
    saved = tmp_path / export_name(run_id, filter_slug(f), made.made_at, "html")
    saved.write_bytes(gallery_file(made))

    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if urlparse(r.url).scheme not in ("file", "data", "blob")
            else None)
    page.goto(saved.as_uri())
    expect(page.locator("figure.tile")).to_have_count(len(tiles))
    expect(page.locator("h1")).to_contain_text("all paintings of the test split")

    with_maps = page.locator("figure.tile:has(details.maps)").first
    maps = with_maps.locator("details.maps .map img")
    expect(maps.first).not_to_be_visible()
    with_maps.locator("button.thumb").click()  # a tap on the painting opens what the model looked at
    expect(maps.first).to_be_visible()
    page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=maps.first.element_handle())
    expect(with_maps.locator(".map b").first).to_have_text("Guided Backprop")  # the config's order, as every page

    page.locator("#reviewer").fill("Ana Ruiz")
    judged = page.locator("figure.tile")
    given = {0: ("label wrong", "cf. the 1642 inventory, \"Rembrandt\""), 1: ("model right", ""),
             2: ("outside its period", "")}
    for n, (verdict, note) in given.items():
        judged.nth(n).get_by_role("button", name=verdict, exact=True).click()
        if note:
            judged.nth(n).get_by_label("Note").fill(note)
    # "label wrong" asks which period is right (the next run can relabel by it); no other verdict asks
    right_period = judged.nth(0).get_by_label("The right period")
    expect(judged.nth(1).get_by_label("The right period")).to_be_hidden()
    periods = [o for o in right_period.locator("option").all_inner_texts() if o != "not sure"]
    right_period.select_option(periods[-1])
    judged.nth(3).get_by_label("Note").fill("a note with no verdict is not written")
    expect(page.locator("#given")).to_have_text("3 verdicts given")
    pictures(page, "gallery-file")

    page.reload()  # nothing lost: the verdicts live in localStorage under this export's id
    expect(page.locator("#reviewer")).to_have_value("Ana Ruiz")
    expect(judged.nth(0).get_by_role("button", name="label wrong", exact=True)).to_have_attribute(
        "aria-pressed", "true")
    expect(judged.nth(0).get_by_label("Note")).to_have_value(given[0][1])
    expect(judged.nth(0).get_by_label("The right period")).to_have_value(periods[-1])
    expect(judged.nth(2).get_by_role("button", name="outside its period", exact=True)).to_have_attribute(
        "aria-pressed", "true")
    expect(page.locator("#given")).to_have_text("3 verdicts given")

    with page.expect_download() as download:
        page.get_by_role("button", name="Download my verdicts").click()
    assert re.fullmatch(r"period-eye-verdicts_.+_Ana-Ruiz_\d{4}-\d{2}-\d{2}\.csv", download.value.suggested_filename)
    text = download.value.path().read_bytes().decode("utf-8")  # as written: read_text would fold CRLF
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == HEADER and text.startswith(",".join(HEADER) + "\r\n")
    rows = list(reader)
    meta = json.loads(page.locator("#periodeye-meta").text_content() or "")
    number = {n: int(judged.nth(n).get_attribute("data-n") or -1) for n in given}  # the tile's row in the JSON
    assert sorted((r["image_id"], r["verdict"], r["note"]) for r in rows) == sorted(
        (meta["tiles"][number[n]]["image_id"], verdict, note) for n, (verdict, note) in given.items())
    for r in rows:
        assert (r["format"], r["export_id"], r["run_id"], r["reviewer"]) == (
            "periodeye-verdicts/1", made.export_id, run_id, "Ana Ruiz")
        assert r["content_hash"] == hashes[r["image_id"]]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["time"])
        assert r["corrected_period"] == (periods[-1] if r["verdict"] == "label wrong" else "")
    assert asked == []  # opened from disk, it asked the network for nothing

    # ... and the verdicts come back: uploaded on the Annotations page they join the list; uploaded again, nothing
    returned = tmp_path / download.value.suggested_filename
    download.value.save_as(returned)
    before = None
    for report in ("3 added, 0 already there, 0 skipped", "0 added, 3 already there, 0 skipped"):  # a later visit
        open_page(page, served, "annotations")
        before = listed(page) if before is None else before
        page.get_by_text("Import verdicts from an exported gallery").click()
        page.locator("input[type='file']").set_input_files(str(returned))
        page.get_by_text(report).wait_for(timeout=60_000)
        wait_for_app(page)
        assert listed(page) == before + 3
    assert sorted(sql(served.store, "SELECT verdict, note, corrected_period FROM annotations WHERE author = 'Ana Ruiz'")
                  ) == sorted((verdict, note or None, periods[-1] if verdict == "label wrong" else None)
                              for verdict, note in given.values())
