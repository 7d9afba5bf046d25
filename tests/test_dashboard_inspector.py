"""The Inspector's logic on the demo store, through AppTest: it says what the run predicted and marks the true period,
steps through the Errors filter (the same URL keys as the Errors page), and reads its tables in words."""

from __future__ import annotations

import json

import pytest

from pipeline.config import ATTRIBUTION_METHODS
from tests.conftest import open_dashboard, sql

pytestmark = pytest.mark.slow  # the demo store

RUN = "tiny/head"


def errors_in_order(store, where: str = "", params=()) -> list[str]:
    """The Errors page's default order of the run's test errors (most confident first), in SQL."""
    return [i for (i,) in sql(store, f"""SELECT image_id FROM predictions WHERE run_id = ? AND task = 'period'
                                        AND split = 'test' AND NOT correct {where}
                                        ORDER BY confidence DESC, image_id""", [RUN, *params])]


def test_next_and_previous_walk_the_errors_filter(demo_store, monkeypatch):
    errors = errors_in_order(demo_store)
    assert len(errors) >= 3
    at = open_dashboard(demo_store, monkeypatch, "inspector.py", run=RUN)
    assert at.query_params["image"] == errors[0]
    assert at.button(key="previous_image").disabled
    at.button(key="next_image").click().run()
    assert at.query_params["image"] == errors[1]
    assert any(m.value.startswith(f"error 2 of {len(errors)}") for m in at.markdown)
    at.button(key="previous_image").click().run()
    assert at.query_params["image"] == errors[0]

    true = sql(demo_store, "SELECT true_label FROM predictions WHERE run_id = ? AND image_id = ?",
               [RUN, errors[0]])[0][0]
    only = errors_in_order(demo_store, "AND true_label = ?", [true])
    at = open_dashboard(demo_store, monkeypatch, "inspector.py", run=RUN, true=[true], image=only[0])
    at.button(key="next_image").click().run()
    assert at.query_params["image"] == (only[1] if len(only) > 1 else only[0])
    assert any(f"error 1 of {len(only)}" in m.value or f"error 2 of {len(only)}" in m.value for m in at.markdown)


def test_says_the_prediction_and_marks_the_true_period(demo_store, monkeypatch):
    image = errors_in_order(demo_store)[0]
    true, pred = sql(demo_store, "SELECT true_label, pred_label FROM predictions WHERE run_id = ? AND image_id = ? "
                                 "AND task = 'period'", [RUN, image])[0]
    at = open_dashboard(demo_store, monkeypatch, "inspector.py", run=RUN, image=image)
    said = [m.value for m in at.markdown if "predicted" in m.value]
    assert said and f"predicted **{pred}**" in said[0] and f"the true period is **{true}**" in said[0]
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    order = [label for (label,) in sql(demo_store, "SELECT label FROM run_labels WHERE run_id = ? AND task = 'period' "
                                                   "ORDER BY class_index", [RUN])]
    band = fig["layout"]["shapes"][0]
    assert (band["x0"] + band["x1"]) / 2 == order.index(true)


def test_maps_follow_the_upload_page_and_tables_read_in_words(demo_store, monkeypatch):
    image = sql(demo_store, "SELECT image_id FROM attributions WHERE run_id = ? LIMIT 1", [RUN])[0][0]
    at = open_dashboard(demo_store, monkeypatch, "inspector.py", run=RUN, image=image)
    assert at.slider(key="w_alpha").value == 0.5 and "alpha" not in at.query_params  # the Upload page's default
    names = {"guided_backprop": "Guided Backprop", "integrated_gradients": "Integrated Gradients",
             "grad_cam": "Grad-CAM"}
    captions = [i.proto.imgs[0].caption for i in at.get("image") if i.proto.imgs[0].caption in names.values()]
    stored = {m for (m,) in sql(demo_store, "SELECT DISTINCT method FROM attributions WHERE run_id = ?", [RUN])}
    assert captions[: len(stored)] == [names[m] for m in ATTRIBUTION_METHODS if m in stored]
    sanity = sql(demo_store, "SELECT method, spearman_mean FROM attribution_sanity WHERE run_id = ?", [RUN])
    words = " ".join(m.value for m in at.markdown)
    for method, rho in sanity:
        assert f"{names[method]} " in words and "when the weights are randomised" in words
        if rho >= 0.5:
            assert f"{names[method]} barely changes when the weights are randomised: it does not explain" in words
    tables = [d.value for d in at.dataframe]
    assert any("in words" in t.columns for t in tables)
    assert not any("guided_backprop" in str(t.values) for t in tables)
    assert any("cosine similarity" in m.value for m in at.markdown)
