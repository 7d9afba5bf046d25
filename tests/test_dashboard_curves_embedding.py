"""The Training curves and Embedding map pages on a real store, and the nearest-neighbour helper:
curves follow the chosen runs and mark stage changes; the map follows run, split and colour,
samples deterministically in SQL; neighbours come from DuckDB with the image itself first."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
from streamlit.proto.WidgetStates_pb2 import WidgetState
from streamlit.testing.v1 import AppTest

from tests.conftest import open_dashboard, sql

pytestmark = pytest.mark.slow  # every test reads the demo store (a session fixture that trains 5 runs)

HOME = Path(__file__).resolve().parent.parent / "dashboard" / "Home.py"


def open_page(store: Path, page: str, monkeypatch, **params) -> AppTest:
    return open_dashboard(store, monkeypatch, page.removeprefix("views/"), **params)




def figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def titles(at: AppTest) -> list[str]:
    return [fig["layout"]["title"]["text"] for fig in figures(at)]


def n_points(trace: dict) -> int:
    """Points in a plotly trace, whether its x is a list or plotly's base64 typed array."""
    x = trace["x"]
    return len(np.frombuffer(base64.b64decode(x["bdata"]), x["dtype"])) if isinstance(x, dict) else len(x)


def plotted_ids(at: AppTest) -> list[str]:
    """Image ids on the embedding map (first customdata entry of every point)."""
    return [row[0] for trace in figures(at)[0]["data"] for row in trace["customdata"]]


# ---- Training curves ---------------------------------------------------------------------------


def test_curves_follow_the_chosen_runs(demo_store, monkeypatch):
    at = open_page(demo_store, "views/curves.py", monkeypatch, runs=["tiny/head"])
    assert sorted(titles(at)) == ["Learning rate", "Loss", "Period accuracy"]
    charts = dict(zip(titles(at), figures(at), strict=True))
    loss = charts["Loss"]
    n_epochs = sql(demo_store, "SELECT count(*) FROM epochs WHERE run_id = 'tiny/head'")[0][0]
    assert sorted(series(t) for t in loss["data"]) == ["tiny/head, train", "tiny/head, val"]
    assert all(n_points(t) == n_epochs for t in loss["data"])
    assert charts["Learning rate"]["layout"]["yaxis"]["type"] == "log"
    first = sql(demo_store, "SELECT min(epoch) FROM epochs WHERE run_id = 'tiny/head'")[0][0]
    for fig in charts.values():  # from the first epoch (0 or 1) to the last, nothing stretching it
        low, high = fig["layout"]["xaxis"]["range"]
        assert min(first, 1) - 1 < low < min(first, 1) and n_epochs + first - 1 < high < n_epochs + first

    at = open_page(demo_store, "views/curves.py", monkeypatch, runs=["tiny/head", "tiny/period-artist"])
    assert sorted(titles(at)) == ["Artist accuracy", "Learning rate", "Loss", "Period accuracy"]
    charts = dict(zip(titles(at), figures(at), strict=True))
    assert {series(t) for t in charts["Loss"]["data"]} >= {"tiny/period-artist, val", "tiny/head, val"}
    assert {series(t) for t in charts["Artist accuracy"]["data"]} == {"tiny/period-artist, train",
                                                                      "tiny/period-artist, val"}
    for fig in charts.values():  # one legend entry per run, below the plot, a one-word title
        legend = fig["layout"]["legend"]
        assert legend["orientation"] == "h" and legend["y"] < 0 and legend["title"]["text"] == "run"
        shown = [t["name"] for t in fig["data"] if t.get("showlegend", True) and t.get("name") != "kept epoch"]
        assert len(shown) == len(set(shown))
    colour = {t["name"]: t["line"]["color"] for fig in charts.values() for t in fig["data"] if "line" in t}
    period_artist = {t["line"]["color"] for fig in charts.values() for t in fig["data"]
                     if t.get("name") == "tiny/period-artist"}
    assert len(period_artist) == 1 and colour["tiny/head"] != colour["tiny/period-artist"]  # same run, same colour


def series(trace: dict) -> str:
    """A curve's "run, train|val" (the legend names the run; the series rides in `meta`, drawn as the dash)."""
    return f"{trace['name']}, {trace['meta']}"


def test_learning_rate_ticks_read_as_powers_of_ten(demo_store, monkeypatch):
    at = open_page(demo_store, "views/curves.py", monkeypatch, runs=["tiny/two-stage", "tiny/head"])
    axis = dict(zip(titles(at), figures(at), strict=True))["Learning rate"]["layout"]["yaxis"]
    lrs = [lr for (lr,) in sql(demo_store, "SELECT lr FROM epochs WHERE run_id IN ('tiny/two-stage', 'tiny/head') "
                                           "AND lr > 0")]
    assert all(re.fullmatch(r"[125]e-?\d+", t) for t in axis["ticktext"]), axis["ticktext"]
    assert [float(t) for t in axis["ticktext"]] == pytest.approx(axis["tickvals"])
    low, high = axis["range"]
    assert 10 ** low <= min(lrs) and max(lrs) <= 10 ** high


def test_curves_mark_the_stage_change(demo_store, monkeypatch):
    first_finetune = sql(demo_store, "SELECT min(epoch) FROM epochs WHERE run_id = 'tiny/two-stage' "
                                     "AND stage = 'finetune'")[0][0]
    at = open_page(demo_store, "views/curves.py", monkeypatch, runs=["tiny/two-stage"])
    for fig in figures(at):
        assert [s["x0"] for s in fig["layout"]["shapes"]] == [first_finetune - 0.5]
        assert "head → finetune" in fig["layout"]["annotations"][0]["text"]
    at = open_page(demo_store, "views/curves.py", monkeypatch, runs=["tiny/head"])
    assert not any(fig["layout"].get("shapes") for fig in figures(at))
    # the label only where that run is drawn: not on the artist chart of another run
    at = open_page(demo_store, "views/curves.py", monkeypatch, runs=["tiny/two-stage", "tiny/period-artist"])
    charts = dict(zip(titles(at), figures(at), strict=True))
    assert not charts["Artist accuracy"]["layout"].get("shapes")
    assert not charts["Artist accuracy"]["layout"].get("annotations")
    assert "two-stage:<br>head → finetune" in charts["Loss"]["layout"]["annotations"][0]["text"]


def test_curves_default_to_every_run_of_the_best_runs_dataset(demo_store, monkeypatch):
    at = open_page(demo_store, "views/curves.py", monkeypatch)
    ranked = [r for (r,) in sql(demo_store, "SELECT run_id FROM runs WHERE evaluation_of IS NULL "
                                            "ORDER BY test_accuracy DESC, run_id")]
    assert at.query_params["runs"] == ranked  # one dataset here; best first
    assert any("Kept weights" in c.value for c in at.caption)


# ---- Embedding map -----------------------------------------------------------------------------


def test_map_follows_run_split_and_colour(demo_store, monkeypatch):
    at = open_page(demo_store, "views/embedding.py", monkeypatch, run="tiny/head", split="test", color="correct")
    test_ids = {i for (i,) in sql(demo_store, "SELECT image_id FROM images WHERE split = 'test'")}
    assert set(plotted_ids(at)) == test_ids
    wrong = {i for (i,) in sql(demo_store, "SELECT image_id FROM predictions WHERE run_id = 'tiny/head' "
                                           "AND task = 'period' AND split = 'test' AND NOT correct")}
    traces = {t["name"]: {row[0] for row in t["customdata"]} for t in figures(at)[0]["data"]}
    assert traces.get("wrong", set()) == wrong and set(traces) <= {"right", "wrong"}

    at = open_page(demo_store, "views/embedding.py", monkeypatch, run="tiny/head", color="period")
    assert len(plotted_ids(at)) == sql(demo_store, "SELECT count(*) FROM embeddings WHERE run_id = 'tiny/head'")[0][0]
    order = [label for (label,) in sql(demo_store, "SELECT label FROM run_labels WHERE run_id = 'tiny/head' "
                                                   "AND task = 'period' ORDER BY class_index")]
    assert [t["name"] for t in figures(at)[0]["data"]] == order


def test_large_maps_are_sampled_deterministically(demo_store, monkeypatch):
    import dashboard.queries.embedding as q

    monkeypatch.setattr(q, "MAX_POINTS", 50)
    first = open_page(demo_store, "views/embedding.py", monkeypatch, run="tiny/head")
    again = open_page(demo_store, "views/embedding.py", monkeypatch, run="tiny/head")
    assert len(plotted_ids(first)) == 50
    assert sorted(plotted_ids(first)) == sorted(plotted_ids(again))
    assert any("sample of **50** of 600" in c.value for c in first.caption)


def test_image_in_the_url_shows_its_neighbours(demo_store, monkeypatch):
    (image_id,) = sql(demo_store, "SELECT min(image_id) FROM embeddings WHERE run_id = 'tiny/head'")[0]
    at = open_page(demo_store, "views/embedding.py", monkeypatch, run="tiny/head", image=image_id)
    captions = [img.proto.imgs[0].caption for img in at.get("image") if img.proto.imgs[0].caption]
    assert len(captions) == 8 and captions[0].startswith(f"{image_id}\ncosine similarity 1.00")
    assert any(f"**{image_id}**" in m.value for m in at.markdown)  # the picked image beside the map


def select_on_map(at: AppTest, image_ids: list[str], lasso: dict | None = None) -> AppTest:
    """Rerun as if those points were lassoed (with `lasso`, the loop's {"x": [...], "y": [...]}): AppTest has no
    chart gestures, so the selection goes in through the widget-state channel the browser uses (AppTest._run, a
    private hook). tests/test_browser_embedding_inspector.py drags a real lasso."""
    if not hasattr(at, "_run"):
        pytest.skip("this Streamlit's AppTest cannot deliver a chart selection")
    chart = at.get("plotly_chart")[0]
    points = [{"customdata": [image_id]} for image_id in image_ids]
    selection = {"points": points, "point_indices": list(range(len(points))), "box": [], "lasso": [lasso or {}]}
    states = at._tree.get_widget_states()
    states.widgets.append(WidgetState(id=chart.proto.id, string_value=json.dumps({"selection": selection})))
    at._run(states)
    assert not at.exception, at.exception
    return at


def test_a_selection_lists_its_images(demo_store, monkeypatch):
    at = open_page(demo_store, "views/embedding.py", monkeypatch, run="tiny/head")
    chosen = sorted(plotted_ids(at))[:30]
    at = select_on_map(at, chosen)
    assert "Selection: 30 images" in [s.value for s in at.subheader]
    summary, table = at.dataframe[0].value, at.dataframe[1].value
    assert sorted(table["image_id"]) == chosen
    wrong = sql(demo_store, "SELECT count(*) FROM predictions WHERE run_id = 'tiny/head' AND task = 'period' "
                            "AND NOT correct AND image_id IN (SELECT unnest(?))", [chosen])[0][0]
    assert summary["images"].sum() == 30 and summary["wrong"].sum() == wrong
    assert len(at.get("image")) == 12 + 1 + 8  # the selection's thumbnails, the picked one, its neighbours
    assert at.query_params["image"] == table["image_id"].iloc[0]


def inside(store: Path, run: str, corners: list[tuple[float, float]]) -> set[str]:
    """The run's images inside a polygon, by DuckDB (ray casting over the stored x, y), to check the page's own."""
    edges = " + ".join(
        f"(CASE WHEN (({y1} > y) != ({y2} > y)) AND x < {x1} + (y - {y1}) * ({x2 - x1}) / ({y2 - y1}) "
        "THEN 1 ELSE 0 END)"
        for (x1, y1), (x2, y2) in zip(corners, corners[1:] + corners[:1], strict=True) if y1 != y2)
    return {i for (i,) in sql(store, f"SELECT image_id FROM embeddings WHERE run_id = ? AND ({edges}) % 2 = 1", [run])}


def test_a_lasso_goes_into_the_url_and_a_link_restores_it(demo_store, monkeypatch):
    at = open_page(demo_store, "views/embedding.py", monkeypatch, run="tiny/head")
    ((x0, x1, y0, y1),) = sql(demo_store, "SELECT min(x), max(x), min(y), max(y) FROM embeddings "
                                          "WHERE run_id = 'tiny/head'")
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 3, (y1 - y0) / 3
    loop = [(cx - rx, cy - ry), (cx + rx, cy - ry), (cx + rx / 2, cy + ry), (cx - rx, cy + ry / 2)]
    expected = inside(demo_store, "tiny/head", loop)
    assert 0 < len(expected) < 600
    at = select_on_map(at, sorted(expected), {"x": [x for x, _ in loop], "y": [y for _, y in loop]})
    region = at.query_params["lasso"]
    assert len(region.split(";")) == 4
    assert f"Selection: {len(expected)} images" in [s.value for s in at.subheader]

    again = open_page(demo_store, "views/embedding.py", monkeypatch, run="tiny/head", lasso=region)
    assert f"Selection: {len(expected)} images" in [s.value for s in again.subheader]
    assert set(again.dataframe[1].value["image_id"]) == expected
    drawn = figures(again)[0]
    assert drawn["layout"]["selections"][0]["type"] == "path"  # the link's region drawn on the map
    assert sum(len(t.get("selectedpoints", [])) for t in drawn["data"]) == len(expected)

    nothing = open_page(demo_store, "views/embedding.py", monkeypatch, run="tiny/head", lasso="1,2;oops")
    assert not any(s.value.startswith("Selection") for s in nothing.subheader) and "lasso" not in nothing.query_params
    assert any("could not be read" in w.value for w in nothing.warning)


def luminance(hex_colour: str) -> float:
    channels = [int(hex_colour.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_palette_is_visible_on_white_and_right_wrong_is_not_red_green(demo_store, monkeypatch):
    at = open_page(demo_store, "views/embedding.py", monkeypatch, run="tiny/head", color="period")
    colours = [t["marker"]["color"] for t in figures(at)[0]["data"]]
    assert len(set(colours)) == len(colours)
    assert all(1.05 / (luminance(c) + 0.05) >= 2.0 for c in colours), colours  # the pastels were 1.1 to 1.5
    assert all(t["marker"]["line"]["width"] > 0 for t in figures(at)[0]["data"])  # a dark outline on every point

    at = open_page(demo_store, "views/embedding.py", monkeypatch, run="tiny/head", color="correct")
    traces = {t["name"]: t["marker"] for t in figures(at)[0]["data"]}
    assert traces["right"]["color"] == "#0072B2" and traces["wrong"]["color"] == "#D55E00"  # blue / orange
    assert traces["right"]["symbol"] != traces["wrong"]["symbol"]  # told apart by shape as well


def test_neighbours_come_first_with_itself(demo_store, monkeypatch):
    from dashboard.queries.embedding import neighbours

    monkeypatch.setenv("PERIODEYE_STORE", str(demo_store))
    rows = sql(demo_store, "SELECT image_id, vector FROM embeddings WHERE run_id = 'tiny/finetune' ORDER BY image_id")
    ids, vectors = [r[0] for r in rows], np.array([r[1] for r in rows], dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1)
    zero = [i for i in ids if not norms[ids.index(i)]]  # a fine-tuned net can give some images an all-zero vector
    if zero:  # no direction, so no neighbours: similarities are undefined (NULL), never NaN sorted among numbers
        near = neighbours("tiny/finetune", zero[0], 5)
        assert near["image_id"].iloc[0] == zero[0] and near["similarity"].iloc[1:].isna().all()
    target = next(i for i in range(7, len(ids)) if norms[i])
    image_id = ids[target]
    near = neighbours("tiny/finetune", image_id, 5)
    assert len(near) == 5
    assert near["image_id"].iloc[0] == image_id and near["similarity"].iloc[0] == pytest.approx(1.0)
    assert list(near["similarity"]) == sorted(near["similarity"], reverse=True)
    unit = vectors / np.where(norms > 0, norms, np.inf)[:, None]
    cosine = unit @ unit[target]
    cosine[target] = -np.inf
    assert near["image_id"].iloc[1] == ids[int(np.argmax(cosine))]
    assert near["similarity"].iloc[1] == pytest.approx(cosine.max(), abs=1e-5)
    assert {"true_label", "pred_label", "artist", "thumbnail"} <= set(near.columns)
    assert neighbours("tiny/finetune", "no/such-image.jpg", 5).empty


def test_selection_queries_match_sql(demo_store, monkeypatch):
    """What a box/lasso selection lists (AppTest cannot drag on a chart, so the page's queries directly)."""
    from dashboard.queries import embedding as q

    monkeypatch.setenv("PERIODEYE_STORE", str(demo_store))
    ids = [i for (i,) in sql(demo_store, "SELECT image_id FROM images WHERE split = 'val' ORDER BY image_id LIMIT 40")]
    table = q.selected("tiny/head", ids)
    assert sorted(table["image_id"]) == sorted(ids)
    wrong = sql(demo_store, "SELECT count(*) FROM predictions WHERE run_id = 'tiny/head' AND task = 'period' "
                            "AND NOT correct AND image_id IN (SELECT unnest(?))", [ids])[0][0]
    summary = q.selection_summary("tiny/head", ids)
    assert summary["images"].sum() == 40 and summary["wrong"].sum() == wrong
    assert list(q.thumbnails("tiny/head", ids[:3])["image_id"]) == ids[:3]


@pytest.mark.parametrize("page", ["views/curves.py", "views/embedding.py"])
def test_empty_store_shows_a_friendly_message(page, tmp_path, monkeypatch):
    at = open_page(tmp_path / "missing.duckdb", page, monkeypatch)
    assert any("No runs" in i.value for i in at.info)
    assert not at.get("plotly_chart")
