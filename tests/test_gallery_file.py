"""The exported gallery explains itself and is safe: header in words, legend, confusion table, overlays inline,
every data text escaped (in the markup and in the script's JSON block), no address of any network, a file name
that says run, filter and date; the CSV's run, top-3 and verdict columns."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from datetime import datetime

import duckdb
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dashboard.export import export_name, filter_slug, filter_words, gallery_csv, top3
from dashboard.gallery_file import FORMAT, VERDICTS, Gallery, Overlay, render, script_json
from dashboard.model_words import backbone_name, model_words
from dashboard.queries.gallery import GalleryFilter
from dashboard.text import METHOD_ABOUT, METHOD_NAMES
from tests.conftest import copy_store

SCRIPT = "<script>alert(1)</script>"
BREAKOUT = '"><img src=x onerror=alert(1)>'
PERIODS = ["Baroque", "Rococo", "Romanticism"]


def jpeg(colour: tuple[int, int, int] = (120, 80, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(buffer, "JPEG")
    return buffer.getvalue()


def tile(image_id: str, true: str, pred: str, **extra) -> dict:
    return {"image_id": image_id, "content_hash": f"hash-{image_id}", "true_label": true, "pred_label": pred,
            "confidence": 0.94, "split": "test", "artist": "Goya", "title": "Saturn", "date": "1820",
            "path": f"/data/{true}/{image_id}", "thumbnail": jpeg(), **extra}


def a_gallery(tiles: list[dict], **extra) -> Gallery:
    confusion = pd.DataFrame([("Baroque", "Baroque", 5), ("Baroque", "Rococo", 2), ("Rococo", "Romanticism", 1)],
                             columns=["true_label", "pred_label", "count"])
    spec = dict(title="Period Eye: test errors", run_id="exp/run-1", export_id="0123abcd" * 4,
                made_at=datetime(2026, 11, 29, 12, 0), model="EfficientNet-Lite0 pretrained on ImageNet",
                periods=PERIODS, filter_words="Paintings of the test split that the model got wrong",
                tiles=pd.DataFrame(tiles), metrics={"accuracy": 0.812, "balanced_accuracy": 0.774, "macro_f1": 0.7651,
                                                    "n": 420.0},
                confusion=confusion, overlays={"a.jpg": [Overlay("grad_cam", jpeg((250, 0, 0))),
                                                         Overlay("guided_backprop", jpeg((0, 0, 250)))]})
    return Gallery(**{**spec, **extra})


def json_block(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="periodeye-meta">(.*?)</script>', page, re.S)
    assert found
    return json.loads(found.group(1))


def test_the_header_names_the_model_its_metrics_and_periods_in_order_and_the_legend_explains_a_tile():
    page = render(a_gallery([tile("a.jpg", "Baroque", "Rococo"), tile("b.jpg", "Rococo", "Romanticism")]))
    assert "EfficientNet-Lite0 pretrained on ImageNet" in page
    assert "<b>81%</b> of the time (accuracy)" in page and "<b>77%</b> (balanced" in page and "<b>0.77</b>" in page
    assert "420 test paintings" in page
    spans = re.findall(r'<span class="period">([^<]*)</span>', page)
    assert spans == PERIODS  # chronological, as the pages order them
    assert "Paintings of the test split that the model got wrong (2 images)" in page
    assert "run exp/run-1" in page and "export " + "0123abcd" * 4 in page and "2026-11-29 12:00" in page
    legend = page[page.index('id="legend"'):page.index("</section>")]
    for words in ("<b>Label</b>: the period the collection", "<b>Model's guess</b>", "probability it gave its guess",
                  *METHOD_NAMES.values()):
        assert words in legend
    assert "<span class=\"k\">Label</span> Baroque" in page and "94% sure" in page


def test_the_confusion_table_counts_in_chronological_order_and_links_rows_to_their_tiles():
    page = render(a_gallery([tile("a.jpg", "Baroque", "Rococo")]))
    table = page[page.index("<table>"):page.index("</table>")]
    rows = re.findall(r"<tr><th scope=\"row\">(.*?)</th>(.*?)</tr>", table)
    assert [re.sub("<[^>]+>", "", name) for name, _ in rows] == PERIODS
    assert re.findall(r">(\d+)</td>", rows[0][1]) == ["5", "2", "0"]
    assert rows[0][0] == '<a href="#label-0">Baroque</a>'  # Baroque has tiles here; Rococo has none: no link
    assert "<a" not in rows[1][0]
    assert 'id="label-0"' in page


def test_overlays_are_inline_images_with_their_method_explained_and_every_tile_has_the_four_verdicts():
    page = render(a_gallery([tile("a.jpg", "Baroque", "Rococo"), tile("b.jpg", "Baroque", "Baroque")]))
    maps = re.findall(r'<div class="map"><img loading="lazy" alt="([^"]+)" src="data:image/jpeg;base64,([^"]+)"', page)
    assert [m[0] for m in maps] == ["Grad-CAM", "Guided Backprop"]
    assert Image.open(io.BytesIO(__import__("base64").b64decode(maps[0][1]))).getpixel((5, 5))[0] > 200
    assert METHOD_ABOUT["grad_cam"] in page
    assert page.count("<details class=\"maps\">") == 1  # b.jpg has no stored maps: no empty box
    assert page.count('data-verdict="') == 4 * 2 and page.count('class="note"') == 2
    assert all(f'data-verdict="{v}"' in page for v in VERDICTS)
    assert 'id="reviewer"' in page and ">Download my verdicts</button>" in page


def test_hostile_text_is_escaped_in_the_markup_and_in_the_json_block():
    hostile = tile(BREAKOUT, SCRIPT, BREAKOUT, title=SCRIPT + "</script>", artist=BREAKOUT, date=SCRIPT,
                   content_hash=SCRIPT, path=BREAKOUT, verdict="label wrong", note=SCRIPT, author=BREAKOUT)
    page = render(a_gallery([hostile], title=SCRIPT, run_id=BREAKOUT, model=SCRIPT, filter_words=BREAKOUT,
                            periods=[SCRIPT, BREAKOUT], include_paths=True))
    assert "<script>alert" not in page and "<img src=x" not in page and "onerror=alert(1)>" not in page
    assert html.escape(SCRIPT) in page and html.escape(BREAKOUT) in page
    assert page.count("<script") == 2  # the JSON block and the page's own script: nothing from data
    meta = json_block(page)  # the block parses, and holds the data as it was
    assert meta["tiles"] == [{"image_id": BREAKOUT, "content_hash": SCRIPT, "title": SCRIPT + "</script>"}]
    assert meta["run_id"] == BREAKOUT and meta["format"] == FORMAT
    assert "</" not in script_json({"t": "</script><!--"}) and "<" not in script_json(["<", ">", "&"])


def test_the_file_asks_nothing_of_the_network_and_shows_paths_only_when_asked():
    tiles = [tile("a.jpg", "Baroque", "Rococo")]
    page = render(a_gallery(tiles))
    assert not re.search(r"\b(?i:https?|wss?|ftp):|//[a-z]|url\(|@import|<link|<iframe|src=\"(?!data:)", page)
    assert "default-src 'none'" in page  # the browser refuses any request the page might still make
    assert "/data/Baroque/a.jpg" not in page  # the path names the label: left out by default
    assert "/data/Baroque/a.jpg" in render(a_gallery(tiles, include_paths=True))


def test_file_names_say_run_filter_and_date():
    f = GalleryFilter("wikiart/lite0 head", "test", ["Baroque"], [], [], "wrong")
    name = export_name(f.run_id, filter_slug(f), datetime(2026, 11, 29), "html")
    assert name == "period-eye_wikiart-lite0-head_test-wrong-true-Baroque_2026-11-29.html"
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", export_name("../../x", "<a>", datetime(2026, 1, 2), "csv"))
    assert filter_words(f) == "Paintings of the test split that the model got wrong, labelled Baroque"
    everything = GalleryFilter("r", None, outcome="all", conf_min=0.5)
    assert filter_words(everything) == ("All paintings of every split (train, val and test), the model 50% to "
                                        "100% sure")
    assert filter_slug(everything) == "all-splits-all-conf-0.50-1.00"
    flagged = GalleryFilter("r", "test", outcome="flagged label issues")
    assert filter_words(flagged) == ("Paintings of the test split whose label a cross-validated check (Cleanlab) "
                                     "finds doubtful")


def test_the_model_in_words():
    facts = {"backbone": "efficientnet_lite0", "pretrained": True, "strategy": "finetune", "n_train": 4190,
             "n_periods": 7, "dataset": "WikiArt", "config": "{}", "synthetic": False}
    assert model_words(facts) == ('EfficientNet-Lite0 pretrained on ImageNet, fine-tuned end to end, on 4,190 '
                                  'paintings of the collection "WikiArt" labelled with 7 periods.')
    head = model_words({**facts, "backbone": "resnet50", "pretrained": False, "strategy": "head", "synthetic": True})
    assert head.startswith("ResNet-50 trained from scratch (no pretraining), only a new final layer trained")
    assert "generated demo pictures" in head
    partial = model_words({**facts, "strategy": "partial", "freeze_until": 3, "evaluation_of": "exp/a"})
    assert "fine-tuned except its first 3 blocks" in partial and "model of run exp/a" in partial
    ensemble = model_words({**facts, "strategy": "ensemble", "config": json.dumps({"run": {"ensemble": ["a", "b"]}})})
    assert "an average of 2 such models" in ensemble
    assert backbone_name("efficientnet_lite2") == "EfficientNet-Lite2" and backbone_name("vit") == "vit"


def test_the_csv_has_the_run_the_three_likeliest_periods_and_the_current_verdict():
    rows = pd.DataFrame([
        {**tile("a.jpg", "Baroque", "Rococo"), "run_id": "exp/r", "probs": np.array([0.2, 0.7, 0.1]), "loss": 1.6,
         "correct": False, "verdict": "label wrong", "note": "=a note", "author": "Ana"},
        {**tile("b.jpg", "Rococo", "Rococo"), "run_id": "exp/r", "probs": None, "loss": 0.1, "correct": True,
         "verdict": None, "note": None, "author": None}])
    reader = csv.DictReader(io.StringIO(gallery_csv(rows, PERIODS).decode("utf-8")))
    assert reader.fieldnames == ["run_id", "image_id", "split", "true_label", "pred_label", "confidence", "top1", "p1",
                                 "top2", "p2", "top3", "p3", "verdict", "note", "reviewer", "artist", "title", "date",
                                 "loss", "correct"]
    first, second = list(reader)
    assert (first["top1"], first["p1"], first["top2"], first["p2"], first["top3"], first["p3"]) == (
        "Rococo", "0.7", "Baroque", "0.2", "Romanticism", "0.1")
    assert (first["verdict"], first["note"], first["reviewer"], first["run_id"]) == ("label wrong", "'=a note", "Ana",
                                                                                      "exp/r")
    assert second["top1"] == "" and second["verdict"] == ""
    assert top3([0.5, 0.5], ["a", "b", "c"]) == [None] * 6  # a vector that is not the run's labels: nothing guessed


@pytest.mark.slow
def test_an_export_from_a_real_store_embeds_maps_escapes_titles_and_carries_verdicts(demo_store, tmp_path,
                                                                                     monkeypatch):
    """The real functions over a real store (its titles made hostile, one verdict saved through the writer)."""
    from dashboard.export import errors_export, gallery_file
    from dashboard.queries.runs import labels
    from dashboard.queries.verdicts import save_annotation

    store = copy_store(demo_store, tmp_path)
    with duckdb.connect(str(store)) as con:
        con.execute("UPDATE images SET title = ?, artist = ?", [SCRIPT, BREAKOUT])
        run_id, dataset_id = con.execute("""SELECT run_id, dataset_id FROM runs WHERE run_id IN (SELECT run_id FROM
            attributions) ORDER BY run_id LIMIT 1""").fetchone()
        image_id = con.execute("""SELECT image_id FROM attributions WHERE run_id = ? AND target_kind = 'predicted'
            ORDER BY image_id LIMIT 1""", [run_id]).fetchone()[0]
        n_maps = con.execute("SELECT count(*) FROM attributions WHERE run_id = ? AND target_kind = 'predicted'",
                             [run_id]).fetchone()[0]
    monkeypatch.setenv("PERIODEYE_STORE", str(store))
    save_annotation(dataset_id, image_id, run_id, "label wrong", "<b>cf. inventory</b>", "Ana", store)

    g, tiles = errors_export(GalleryFilter(run_id, "test", outcome="all"), 500)
    page = gallery_file(g).decode("utf-8")
    assert page.count("data:image/jpeg;base64,") == len(tiles) + n_maps  # every thumbnail and stored map, inline
    assert "<script>alert" not in page and "<img src=x" not in page and html.escape(SCRIPT) in page
    assert json_block(page)["tiles"][0]["title"] == SCRIPT
    assert "pretrained on ImageNet" in g.model or "trained from scratch" in g.model
    assert "In Period Eye already: label wrong: &lt;b&gt;cf. inventory&lt;/b&gt; (Ana)" in page
    row = next(r for r in csv.DictReader(io.StringIO(gallery_csv(tiles, labels(run_id)).decode("utf-8")))
               if r["image_id"] == image_id)
    assert (row["verdict"], row["reviewer"], row["run_id"]) == ("label wrong", "Ana", run_id)
    assert row["top1"] == row["pred_label"] and float(row["p1"]) >= float(row["p2"]) >= float(row["p3"])


def test_the_header_says_what_the_experts_found_when_they_judged_errors():
    summary = {"run_id": "exp/run-1", "errors": 40, "reviewed_errors": 12, "label_wrong": 7, "model_right": 2,
               "ambiguous": 2, "outside": 1, "accuracy": 0.8, "accuracy_if_experts_right": 0.818}
    page = render(a_gallery([tile("a.jpg", "Baroque", "Rococo")], experts=summary))
    assert ("have judged 12 of the model's 40 test errors: 7 label wrong, 2 model right, 2 ambiguous, 1 outside its "
            "period; if the experts are right, the model's accuracy is 82% instead of 80%") in page
    assert "Experts so far" not in render(a_gallery([tile("a.jpg", "Baroque", "Rococo")],
                                                    experts={**summary, "reviewed_errors": 0}))
