"""The Compare runs page on a real store: metrics follow the chosen runs and split, the McNemar counts
and the right/wrong thumbnails match SQL on the store, different datasets get metrics only,
and cached queries never leak from one store to another."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest
from scipy.stats import binomtest
from streamlit.testing.v1 import AppTest

from dashboard.text import with_interval
from pipeline.intervals import difference_words, paired_difference_from_counts
from tests.conftest import open_dashboard, sql

pytestmark = pytest.mark.slow  # every test reads the demo store (a session fixture that trains 5 runs)

HOME = Path(__file__).resolve().parent.parent / "dashboard" / "Home.py"
PAGE_SIZE = 24  # dashboard/ui.py


def open_page(store: Path, monkeypatch, **params) -> AppTest:
    return open_dashboard(store, monkeypatch, "compare.py", **params)




def headline(store: Path, run_id: str, split: str = "test", metric: str = "accuracy") -> float:
    return sql(store, "SELECT value FROM metrics WHERE run_id = ? AND split = ? AND task = 'period' "
                      "AND metric = ? AND label IS NULL", [run_id, split, metric])[0][0]


def shown(value: float):
    """A value as the metrics table can show it: to three decimals."""
    return pytest.approx(value, abs=5.01e-4)


def metrics_frame(at: AppTest):
    """The metrics table's numbers: each cell reads '0.459 ± 0.026', '120' (images) or '−0.025' (B − A)."""
    return at.dataframe[0].value.map(lambda t: float(t.split()[0].replace("−", "-").replace(",", "")) if t else np.nan)


def test_every_score_shows_its_interval_and_the_pair_gets_a_paired_sentence(demo_store, monkeypatch):
    a, b = "tiny/head", "tiny/finetune"
    at = open_page(demo_store, monkeypatch, runs=[a, b])
    cells = at.dataframe[0].value
    for column in ("accuracy", "balanced accuracy", "macro-F1"):
        assert all("±" in t for t in cells.loc[[a, b], column]), cells[column]
    value, low, high = sql(demo_store, "SELECT value, low, high FROM metrics WHERE run_id = ? AND split = 'test' "
                                       "AND task = 'period' AND metric = 'accuracy' AND label IS NULL", [a])[0]
    assert cells.loc[a, "accuracy"] == with_interval(value, low, high)
    n_b, n_c = discordant(demo_store, a, b)
    n = sql(demo_store, "SELECT count(*) FROM predictions WHERE run_id = ? AND split = 'test' AND task = 'period' "
                        "AND correct IS NOT NULL", [a])[0][0]
    words = " ".join(m.value for m in at.markdown)
    assert "paired bootstrap over the images" in words
    diff, lo, hi = paired_difference_from_counts(n_b, n_c, n)
    assert diff == pytest.approx((n_c - n_b) / n) and lo <= diff <= hi
    assert difference_words(diff, lo, hi, a=f"**{a}**", b=f"**{b}**") in words


def discordant(store: Path, a: str, b: str, split: str = "test") -> tuple[int, int]:
    """(b, c) of McNemar: A right & B wrong, A wrong & B right, on the images both predicted."""
    rows = sql(store, """SELECT count(*) FILTER (WHERE pa.correct AND NOT pb.correct),
                                count(*) FILTER (WHERE NOT pa.correct AND pb.correct)
                         FROM predictions pa JOIN predictions pb USING (image_id, split, task)
                         WHERE pa.run_id = ? AND pb.run_id = ? AND split = ? AND task = 'period'""", [a, b, split])
    return rows[0]


@pytest.fixture(scope="module")
def altered_store(demo_store: Path, tmp_path_factory) -> Path:
    """A copy of the demo store with 'tiny/head' moved to another dataset and one accuracy changed,
    given the original's modification time, so only the store path tells the two apart in a cache key."""
    copy = tmp_path_factory.mktemp("altered") / "store.duckdb"
    shutil.copy2(demo_store, copy)
    with duckdb.connect(str(copy)) as con:
        con.execute("""INSERT INTO datasets (dataset_id, name, source, synthetic)
                       VALUES ('other-0', 'other paintings', 'demo', true)""")
        con.execute("UPDATE runs SET dataset_id = 'other-0' WHERE run_id = 'tiny/head'")
        con.execute("""UPDATE metrics SET value = 0.123 WHERE run_id = 'tiny/finetune' AND split = 'test'
                       AND task = 'period' AND metric = 'accuracy' AND label IS NULL""")
    stamp = demo_store.stat().st_mtime_ns
    os.utime(copy, ns=(stamp, stamp))
    return copy


def test_default_runs_are_the_best_two_of_one_dataset(demo_store, monkeypatch):
    best = [r for (r,) in sql(demo_store, "SELECT run_id FROM runs WHERE evaluation_of IS NULL "
                                          "ORDER BY test_accuracy DESC, run_id LIMIT 2")]
    at = open_page(demo_store, monkeypatch)
    assert at.query_params["runs"] == best
    assert at.query_params["split"] == "test"
    table = metrics_frame(at)
    assert list(table.index) == [*best, "B − A"]
    assert table.loc[best[1], "accuracy"] == shown(headline(demo_store, best[1]))
    assert len(at.get("plotly_chart")) == 4  # per-class F1, two confusion matrices, their difference


def test_other_runs_and_split_change_the_metrics(demo_store, monkeypatch):
    at = open_page(demo_store, monkeypatch, runs=["tiny/head", "tiny/two-stage", "tiny/period-artist"], split="val")
    table = metrics_frame(at)
    assert list(table.index) == ["tiny/head", "tiny/two-stage", "tiny/period-artist", "B − A"]
    for run_id in ("tiny/head", "tiny/two-stage", "tiny/period-artist"):
        assert table.loc[run_id, "accuracy"] == shown(headline(demo_store, run_id, "val"))
        assert table.loc[run_id, "macro-F1"] == shown(headline(demo_store, run_id, "val", "macro_f1"))
    n_val = sql(demo_store, "SELECT count(*) FROM images WHERE split = 'val'")[0][0]
    assert table.loc["tiny/head", "images"] == n_val
    assert table.loc["B − A", "accuracy"] == shown(
        headline(demo_store, "tiny/two-stage", "val") - headline(demo_store, "tiny/head", "val"))
    assert len(at.get("plotly_chart")) == 5  # F1 bars, three matrices, one difference


def test_mcnemar_and_thumbnails_match_sql(demo_store, monkeypatch):
    a, b = "tiny/head", "tiny/finetune"
    at = open_page(demo_store, monkeypatch, runs=[a, b], split="train")
    n_b, n_c = discordant(demo_store, a, b, "train")
    words = " ".join(m.value for m in at.markdown)
    assert f"b = {n_b:,}" in words and f"c = {n_c:,}" in words
    if n_b + n_c:
        assert f"p = {binomtest(n_b, n_b + n_c, 0.5).pvalue:.3g}" in words
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["A right, B wrong (b)"] == f"{n_b:,}" and metrics["B right, A wrong (c)"] == f"{n_c:,}"
    side = at.button_group(key="w_side")
    assert side.options[0].endswith(f"({n_b:,})") and side.options[1].endswith(f"({n_c:,})")
    assert side.value == "ab" and at.query_params["side"] == "ab"
    assert len(at.get("image")) == min(n_b, PAGE_SIZE)
    side.set_value("ba").run()
    assert at.query_params["side"] == "ba"
    assert len(at.get("image")) == min(n_c, PAGE_SIZE)
    assert len(open_page(demo_store, monkeypatch, runs=[a, b], split="train", side="ba").get("image")) == \
        min(n_c, PAGE_SIZE)  # a link keeps the side


def test_thumbnail_pages_are_paged_in_sql(demo_store, monkeypatch):
    """The second page of the larger direction shows the rest (up to a page), none of the first page's images."""
    a, b = "tiny/head", "tiny/finetune"
    n_b, n_c = discordant(demo_store, a, b, "train")
    key, total, side = ("page_ab", n_b, "ab") if n_b >= n_c else ("page_ba", n_c, "ba")
    if total <= PAGE_SIZE:
        pytest.skip("the demo runs disagree on too few images for a second page")
    first = open_page(demo_store, monkeypatch, runs=[a, b], split="train", side=side).get("image")
    second = open_page(demo_store, monkeypatch, runs=[a, b], split="train", side=side, **{key: "2"}).get("image")
    assert len(second) == min(PAGE_SIZE, total - PAGE_SIZE)
    assert not captions(first) & captions(second)


def heatmap_z(at: AppTest, index: int) -> np.ndarray:
    """The z matrix of the index-th plotly chart (plotly may send it as a base64 typed array)."""
    z = json.loads(at.get("plotly_chart")[index].proto.spec)["data"][0]["z"]
    if isinstance(z, dict):
        shape = [int(n) for n in str(z["shape"]).split(",")]
        return np.frombuffer(base64.b64decode(z["bdata"]), z["dtype"]).reshape(shape)
    return np.array(z, dtype=float)


def heatmap_trace(at: AppTest, index: int) -> dict:
    return json.loads(at.get("plotly_chart")[index].proto.spec)["data"][0]


def test_matrices_name_every_class_and_colour_the_difference_by_meaning(demo_store, monkeypatch):
    """Every class is a tick on both axes; in B − A positive colour means "B better" on the diagonal (more right)
    and off it (fewer of that confusion), while each cell's text is the signed difference itself."""
    a, b = "tiny/head", "tiny/finetune"
    at = open_page(demo_store, monkeypatch, runs=[a, b], split="train", norm="0")
    order = [label for (label,) in sql(demo_store, "SELECT label FROM run_labels WHERE run_id = ? AND task = 'period' "
                                                   "ORDER BY class_index", [a])]
    figs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")[1:4]]
    for fig in figs:
        assert fig["layout"]["xaxis"]["tickvals"] == order and fig["layout"]["yaxis"]["tickvals"] == order
    diff = heatmap_z(at, 2) - heatmap_z(at, 1)
    colour = heatmap_z(at, 3)
    eye = np.eye(len(order), dtype=bool)
    assert np.allclose(colour[eye], diff[eye]) and np.allclose(colour[~eye], -diff[~eye])
    text = np.array(heatmap_trace(at, 3)["text"])
    assert [float(t) for t in text.ravel()] == pytest.approx(diff.ravel())
    bar = figs[2]["data"][0]["colorbar"]
    assert bar["ticktext"] == ["B worse", "same", "B better"]


@pytest.fixture(scope="module")
def twin_store(demo_store: Path, tmp_path_factory) -> Path:
    """A copy of the demo store in which 'tiny/freeze3' has exactly the confusion cells of 'tiny/finetune'."""
    copy = tmp_path_factory.mktemp("twin") / "store.duckdb"
    shutil.copy2(demo_store, copy)
    with duckdb.connect(str(copy)) as con:
        con.execute("DELETE FROM confusion WHERE run_id = 'tiny/freeze3'")
        con.execute("""INSERT INTO confusion SELECT * REPLACE ('tiny/freeze3' AS run_id) FROM confusion
                       WHERE run_id = 'tiny/finetune'""")
    return copy


def test_identical_runs_get_a_readable_difference_scale(twin_store, monkeypatch):
    """Two runs with the same confusion: a zero difference on a -1…1 scale labelled in words (not "−1n … 1n")."""
    at = open_page(twin_store, monkeypatch, runs=["tiny/finetune", "tiny/freeze3"])
    trace = heatmap_trace(at, 3)
    assert not heatmap_z(at, 3).any()
    assert (trace["zmin"], trace["zmax"]) == (-1.0, 1.0)
    assert trace["colorbar"]["ticktext"] == ["B worse", "same", "B better"]
    assert {t for row in trace["text"] for t in row} == {"0"}


def test_configs_side_by_side_highlight_what_differs(demo_store, monkeypatch):
    a, b = "tiny/head", "tiny/finetune"
    at = open_page(demo_store, monkeypatch, runs=[a, b])
    table = at.dataframe[1].value
    assert list(table.columns) == ["field", f"A: {a}", f"B: {b}"]
    configs = {r: json.loads(c) for r, c in sql(demo_store, "SELECT run_id, config FROM runs WHERE run_id IN (?, ?)",
                                                [a, b])}
    rows = dict(zip(table["field"], zip(table[f"A: {a}"], table[f"B: {b}"], strict=True), strict=True))
    assert rows["run.freezing.strategy"] == (configs[a]["run"]["freezing"]["strategy"],
                                             configs[b]["run"]["freezing"]["strategy"])
    differing = [f for f, (x, y) in rows.items() if x != y]
    assert "run.freezing.strategy" in differing and "data.source" not in differing
    assert list(table["field"])[:len(differing)] == differing  # the differing fields come first
    caption = next(c.value for c in at.caption if "fields differ" in c.value)
    assert f"**{len(differing)}** of {len(rows)} fields differ" in caption
    at.toggle(key="w_config_diff").set_value(True).run()
    assert list(at.dataframe[1].value["field"]) == differing


def test_normalisation_writes_the_url(demo_store, monkeypatch):
    a, b = "tiny/head", "tiny/finetune"
    at = open_page(demo_store, monkeypatch, runs=[a, b], split="train")
    assert np.allclose(heatmap_z(at, 1).sum(axis=1), 1.0)  # A's matrix, row-normalised by default
    at.toggle[0].set_value(False).run()
    assert at.query_params["norm"] == "0"
    n_train = sql(demo_store, "SELECT count(*) FROM predictions WHERE run_id = ? AND split = 'train' "
                              "AND task = 'period'", [a])[0][0]
    assert heatmap_z(at, 1).sum() == n_train


def test_disagreements_page_through_the_shared_pager(demo_store, monkeypatch):
    """The pager of the Errors gallery (ui.pager): `next →` moves the URL and the thumbnails to page 2 of n, and a
    link past the end shows the last page with a note saying so."""
    a, b = "tiny/head", "tiny/finetune"
    n_b, n_c = discordant(demo_store, a, b, "train")
    key, total, side = ("page_ab", n_b, "ab") if n_b >= n_c else ("page_ba", n_c, "ba")
    if total <= PAGE_SIZE:
        pytest.skip("the demo runs disagree on too few images for a second page")
    pages = -(-total // PAGE_SIZE)
    at = open_page(demo_store, monkeypatch, runs=[a, b], split="train", side=side)
    assert not at.number_input  # one pager on every page: buttons and "page k of n"
    assert page_label(at) == f"page 1 of {pages}" and key not in at.query_params
    first = captions(at.get("image"))
    at.button(key=f"{key}_next").click().run()
    assert not at.exception, at.exception
    assert at.query_params[key] in ("2", ["2"]) and page_label(at) == f"page 2 of {pages}"
    assert len(at.get("image")) == min(PAGE_SIZE, total - PAGE_SIZE)
    assert not first & captions(at.get("image"))
    past = open_page(demo_store, monkeypatch, runs=[a, b], split="train", side=side, **{key: str(pages + 3)})
    assert [i.value for i in past.info] == [
        f"There is no page {pages + 3}: {total:,} images fill {pages} pages. Showing page {pages}."]
    assert page_label(past) == f"page {pages} of {pages}" and past.query_params[key] in (str(pages), [str(pages)])
    assert len(past.get("image")) == total - (pages - 1) * PAGE_SIZE


def page_label(at: AppTest) -> str:
    """The pager's "page k of n" under the disagreements."""
    return next(m.value for m in at.markdown if re.fullmatch(r"page \d+ of \d+", m.value))


def captions(images) -> set[str]:
    """The thumbnails' captions (each ends with its file name)."""
    return {img.proto.imgs[0].caption for img in images}


def test_runs_on_different_datasets_show_only_metrics(altered_store, monkeypatch):
    at = open_page(altered_store, monkeypatch, runs=["tiny/head", "tiny/finetune"])
    assert any("different datasets" in w.value for w in at.warning)
    assert list(metrics_frame(at).index) == ["tiny/head", "tiny/finetune", "B − A"]
    assert not at.get("plotly_chart") and not at.get("image") and not at.button_group


def test_cache_does_not_leak_between_stores(demo_store, altered_store, monkeypatch):
    """Same SQL, same modification time, different files: each store shows its own numbers."""
    runs = ["tiny/finetune", "tiny/freeze3"]
    original = headline(demo_store, "tiny/finetune")
    assert original != pytest.approx(0.123)
    assert metrics_frame(open_page(demo_store, monkeypatch, runs=runs)).loc["tiny/finetune", "accuracy"] == \
        shown(original)
    assert metrics_frame(open_page(altered_store, monkeypatch, runs=runs)).loc["tiny/finetune", "accuracy"] == \
        shown(0.123)
    assert metrics_frame(open_page(demo_store, monkeypatch, runs=runs)).loc["tiny/finetune", "accuracy"] == \
        shown(original)


def test_empty_store_shows_a_friendly_message(tmp_path, monkeypatch):
    at = open_page(tmp_path / "missing.duckdb", monkeypatch)
    assert any("No runs" in i.value for i in at.info)
    assert not at.dataframe


def test_a_link_repeating_a_run_does_not_break_the_page(demo_store, monkeypatch):
    at = open_page(demo_store, monkeypatch, runs=["tiny/head", "tiny/head", "tiny/finetune"])
    assert at.multiselect(key="w_runs").value == ["tiny/head", "tiny/finetune"]
