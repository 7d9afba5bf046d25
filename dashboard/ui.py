"""Small pieces several pages share."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import state
from dashboard.queries import store_path
from dashboard.queries.runs import runs


def require_runs() -> pd.DataFrame:
    """The store's complete runs; a page with none says how to make some and stops."""
    table = runs()
    if table.empty:
        st.info(f"No runs in the store yet ({store_path()}). Make some with `make artifacts`, then refresh this page.")
        st.stop()
    return table


def choose_runs(label: str, table: pd.DataFrame, default: list[str]) -> list[str]:
    """Several runs, kept in the URL under `runs`; stops with a hint when none is chosen."""
    if not state.get_list("runs"):
        state.put(runs=default)
    chosen = state.choose_many(label, table["run_id"].tolist(), "runs")
    if not chosen:
        st.info("Pick one or more runs.")
        st.stop()
    return chosen
