"""Read-only access to the store for every page: one shared connection, cached results.

Queries run on cursors of one read-only connection that lets go of the file whenever a
writer waits (reader.py), so the pipeline can write while the dashboard is open. Results are
cached per (store file, its modification time), so a refresh after `make artifacts` shows new
runs while repeated page views cost nothing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import duckdb
import pandas as pd
import streamlit as st

from dashboard.queries.reader import READER, file_version
from pipeline import store as pipeline_store

DEFAULT_STORE = Path(__file__).resolve().parents[2] / "artifacts" / "periodeye.duckdb"


def store_path() -> Path:
    """`streamlit run dashboard/Home.py -- --store PATH`, else $PERIODEYE_STORE, else artifacts/."""
    argv = sys.argv
    if "--store" in argv[:-1]:
        return Path(argv[argv.index("--store") + 1])
    return Path(os.environ.get("PERIODEYE_STORE") or DEFAULT_STORE)


def store_version() -> float:
    """Changes whenever the pipeline commits: keys every cache below."""
    return file_version(store_path())


def store_exists() -> bool:
    return store_path().exists()


@st.cache_data(show_spinner=False, max_entries=512)
def _cached(path: str, version: float, sql: str, params: tuple) -> pd.DataFrame:
    return READER.run(path, lambda cur: cur.execute(sql, list(params)).df(), version)


def query(sql: str, params: tuple | list = ()) -> pd.DataFrame:
    """Run read-only SQL on the store (cached until the store changes)."""
    if not store_exists():
        return pd.DataFrame()
    return _cached(str(store_path()), store_version(), sql, tuple(params))


def outdated_schema() -> str | None:
    """The store's schema version when it is older than this code's (None when current or absent)."""
    if not store_exists():
        return None
    try:
        df = query("SELECT value FROM meta WHERE key = 'schema_version'")
    except duckdb.CatalogException:  # an empty file: nothing written yet
        return None
    version = df["value"].iloc[0] if len(df) else "0"
    return None if version == pipeline_store.SCHEMA_VERSION else version


def has_table(name: str) -> bool:
    df = query("SELECT count(*) AS n FROM information_schema.tables WHERE table_name = ?", (name,))
    return bool(len(df) and df["n"].iloc[0])
