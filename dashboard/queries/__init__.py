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


def store_problem() -> str | None:
    """What is wrong with the store file, in one line naming it and what to do; None when pages can read it (or
    when there is none yet: pages then say how to make one). Checked once per version of the file, since every
    page view asks; a store busy for too long raises StoreLockedError (not cached)."""
    path = store_path()
    return _store_problem(str(path), _fingerprint(path))


@st.cache_data(show_spinner=False, max_entries=64)
def _store_problem(path: str, fingerprint: tuple) -> str | None:
    try:
        if pipeline_store.check_file(path):  # before DuckDB opens it
            READER.run(path, lambda cur: pipeline_store.check_open_store(path, cur), file_version(Path(path)))
    except pipeline_store.StoreError as exc:
        return str(exc)
    except duckdb.Error as exc:  # a damaged block the check read
        failure = pipeline_store.store_failure(path, exc)
        if failure is None:
            raise
        return str(failure)
    return None


def _fingerprint(path: Path) -> tuple:
    """The file's version, size and identity: a store copied over the old one is checked again."""
    try:
        stat = path.stat()
    except OSError:
        return ()
    return file_version(path), stat.st_size, stat.st_ino, stat.st_mode


def failure_message(exc: Exception) -> str | None:
    """One line for a store failure a page ran into (a damaged block DuckDB found only when a query read it, a
    store busy for too long); None for anything else, which is a bug to show as it is."""
    if isinstance(exc, pipeline_store.StoreError):
        return str(exc)
    if isinstance(exc, pipeline_store.StoreLockedError):
        return f"The store {store_path()} is busy (the pipeline is writing it): reload this page in a moment."
    if isinstance(exc, duckdb.Error):
        failure = pipeline_store.store_failure(store_path(), exc)
        return None if failure is None else str(failure)
    return None

