"""The URL rule of every page: a link naming a value that does not exist (a deleted run, a period the run lacks) is
said on screen with what exists; the page never shows another value in its place nor rewrites the link."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import open_dashboard, sql


def picker_page() -> None:
    """A page with one URL-backed picker of each kind, as the dashboard's pages use them."""
    import streamlit as st

    from dashboard import state

    run = state.choose("Run", ["demo/head", "demo/finetune"], "run", default="demo/finetune")
    periods = state.choose_many("True period", ["Baroque", "Rococo"], "true")
    st.write(f"showing {run} for {periods}")


def open_picker(**params) -> AppTest:
    at = AppTest.from_function(picker_page, default_timeout=30)
    for key, value in params.items():
        at.query_params[key] = value
    return at.run()


def url(at: AppTest, key: str) -> list[str]:
    """The URL's values for `key` (AppTest keeps a value the page never wrote as it was given)."""
    value = at.query_params[key]
    return value if isinstance(value, list) else [value]


def test_an_unknown_run_is_named_with_what_exists_and_nothing_else_is_shown():
    at = open_picker(run="demo/deleted-run")
    assert not at.exception, at.exception
    assert [w.value for w in at.warning] == [
        "Not found: run **demo/deleted-run**, which this link asks for. "
        "There are 2 to choose from: demo/head, demo/finetune. Pick one in the run menu."]
    assert at.selectbox(key="w_run").value is None  # not another run in its place
    assert not at.markdown  # the page stopped before showing anything for a run
    assert url(at, "run") == ["demo/deleted-run"]  # the link is left as it was


def test_picking_a_run_after_the_message_shows_it_and_puts_it_in_the_url():
    at = open_picker(run="demo/deleted-run")
    at.selectbox(key="w_run").select("demo/head").run()
    assert not at.exception and not at.warning
    assert at.markdown[0].value == "showing demo/head for []"
    assert url(at, "run") == ["demo/head"]


def test_no_run_in_the_link_gives_the_default_silently():
    at = open_picker()
    assert not at.warning and at.markdown[0].value == "showing demo/finetune for []"
    assert url(at, "run") == ["demo/finetune"]


def test_unknown_values_of_a_multiple_choice_are_named_and_the_known_ones_kept():
    at = open_picker(run="demo/head", true=["Rococo", "Cubism"])
    assert [w.value for w in at.warning] == [
        "Not found: true period **Cubism**, which this link asks for. There are 2 to choose from: Baroque, Rococo."]
    assert at.markdown[0].value == "showing demo/head for ['Rococo']"
    at.run()  # the same view again (any other click): said once, not on every rerun
    assert not at.warning


@pytest.mark.slow
@pytest.mark.parametrize("page", ["errors.py", "inspector.py", "embedding.py"])
def test_every_run_page_names_a_deleted_run_and_lists_the_runs(monkeypatch, demo_store, page):
    at = open_dashboard(demo_store, monkeypatch, page, run="tiny/deleted-run")
    message = " ".join(w.value for w in at.warning)
    assert "**tiny/deleted-run**" in message
    assert all(run_id in message for (run_id,) in sql(demo_store, "SELECT run_id FROM runs"))
    assert url(at, "run") == ["tiny/deleted-run"]
