"""The router: every page in Home.PAGES is in the menu, and a missing page file is an error on screen; the Overview's
runs table; every page's default run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import quote

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import REPO_ROOT, copy_store, open_dashboard, sql


def test_a_missing_page_file_stops_the_app_with_its_name(tmp_path: Path, monkeypatch) -> None:
    """A copy of the dashboard without upload.py: Home says which file is missing instead of dropping the page."""
    copy = tmp_path / "dashboard"
    shutil.copytree(REPO_ROOT / "dashboard", copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "views" / "upload.py").unlink()
    monkeypatch.setenv("PERIODEYE_STORE", str(tmp_path / "none.duckdb"))
    at = AppTest.from_file(str(copy / "Home.py"), default_timeout=60).run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == [f"Dashboard page file missing from {copy / 'views'}: upload.py"]


# ---- Overview: the runs table, the best run, the kept stage and epoch --------------------------------------------


def best_by_sql(store: Path) -> tuple[str, float]:
    return sql(store, """SELECT run_id, test_accuracy FROM runs WHERE evaluation_of IS NULL
                         ORDER BY test_accuracy DESC, run_id LIMIT 1""")[0]


def shown_headers(table) -> list[str]:
    """The column headers a person sees, in order (the frame keeps other columns the table does not show)."""
    config = json.loads(table.proto.columns)
    return [config.get(f"name:{c}", config.get(c, {})).get("label", c) for c in table.proto.column_order]


@pytest.mark.slow
def test_overview_runs_table_in_words_with_kept_epoch_and_links(monkeypatch, demo_store):
    at = open_dashboard(demo_store, monkeypatch)
    table = at.dataframe[0]
    measured = {kind: sql(demo_store, "SELECT count(value) FROM metrics WHERE metric = ?",
                          [f"accuracy_artist_{kind}"])[0][0] > 0 for kind in ("seen", "unseen")}
    both = all(measured.values())  # the columns only where the test split has both kinds of painter
    artist = ["artist seen", "artist unseen"] if both else []
    assert shown_headers(table) == ["run", "model", "kept", "train min", "accuracy", "balanced", "macro-F1",
                                    "adjacent", *artist, "maps", "errors", "curves", "compare"]
    if measured["seen"] and not both:  # the demo: every test painter also painted training images, and it says so
        assert any("may recognise the painter" in c.value for c in at.caption)
    rows = table.value.set_index("run_id")
    assert (rows["evaluation_of"] == "").all()  # blank, not None
    best, accuracy = best_by_sql(demo_store)
    for run_id, best_epoch, epochs, stage, seconds in sql(demo_store, """
            SELECT r.run_id, r.best_epoch, r.epochs, e.stage, r.train_seconds FROM runs r
            JOIN epochs e ON e.run_id = r.run_id AND e.epoch = r.best_epoch"""):
        row = rows.loc[run_id]
        assert row["run"] == run_id.split("/", 1)[1]  # one experiment: its name is said above the table
        assert row["kept"].startswith(f"{stage} · {best_epoch}/{epochs}")
        assert row["train_minutes"] == pytest.approx(seconds / 60)
        assert row["errors"] == f"./errors?run={quote(run_id, safe='')}"
        assert row["curves"] == f"./curves?runs={quote(run_id, safe='')}"
        partner = best if run_id != best else rows.drop(best)["test_accuracy"].idxmax()
        assert row["compare"] == f"./compare?runs={quote(run_id, safe='')}&runs={quote(partner, safe='')}"
    assert any(f"Best by test accuracy: **{best}**, {accuracy:.3f}\u00a0±\u00a0" in m.value for m in at.markdown)
    for column in ("accuracy_shown", "balanced_shown", "macro_f1_shown"):  # every score with its 95 % interval
        assert all("±" in t for t in rows[column]), rows[column]
    assert any(r"demo \(synthetic\) · 5 runs" in m.value for m in at.markdown)
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]
    assert (chart["xaxis"]["title"]["text"], chart["yaxis"]["title"]["text"]) == ("run", "score on the test split")


@pytest.mark.slow
@pytest.mark.parametrize("page", ["errors.py", "inspector.py", "upload.py"])
def test_every_run_page_defaults_to_the_best_run_and_says_why(monkeypatch, demo_store, page):
    at = open_dashboard(demo_store, monkeypatch, page)
    best, accuracy = best_by_sql(demo_store)
    assert at.query_params["run"] in ([best], best)
    assert f"The best run by test accuracy ({accuracy:.3f}\u00a0±\u00a0" in " ".join(c.value for c in at.caption)


@pytest.mark.slow
def test_a_two_stage_run_that_kept_its_head_stage_says_so(monkeypatch, demo_store, tmp_path):
    store = copy_store(demo_store, tmp_path)
    with duckdb.connect(str(store)) as con:  # as if fine-tuning had never beaten the head stage's best epoch
        con.execute("""UPDATE runs SET best_epoch = (SELECT max(epoch) FROM epochs
                                                      WHERE run_id = 'tiny/two-stage' AND stage = 'head')
                       WHERE run_id = 'tiny/two-stage'""")
    at = open_dashboard(store, monkeypatch)
    rows = at.dataframe[0].value.set_index("run_id")
    assert rows.loc["tiny/two-stage", "kept"].endswith(" †")
    assert not any(rows.drop("tiny/two-stage")["kept"].str.endswith("†"))
    assert any("† Fine-tuning never beat the head stage in tiny/two-stage" in c.value for c in at.caption)
