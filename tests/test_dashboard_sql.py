"""The SQL console: hostile statements are refused with a message and leave the store untouched; queries work."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from dashboard.queries import sql_console
from dashboard.queries.sql_console import run_query
from tests.conftest import open_dashboard

TABLES = ("runs", "predictions", "images", "annotations", "datasets")


@pytest.fixture(scope="module")
def store(store_without_attributions) -> Path:
    return store_without_attributions


def fingerprint(store: Path) -> tuple:
    """The store's bytes (and WAL) and row counts: any write shows up here."""
    files = [p for p in (store, store.with_name(store.name + ".wal")) if p.exists()]
    digest = [(p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in files]
    with duckdb.connect(str(store), read_only=True) as con:
        counts = [con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES]
    return digest, counts


HOSTILE = [
    ("COPY predictions TO '{tmp}/x.csv'", "COPY statement is not allowed"),
    ("SELECT * FROM read_csv('/etc/passwd')", "cannot read or write files"),
    ("SELECT * FROM read_text('/etc/passwd')", "cannot read or write files"),
    ("SELECT * FROM read_parquet('x')", "cannot read or write files"),
    ("SELECT * FROM glob('/*')", "cannot read or write files"),
    ("SELECT * FROM read_json('http://example.com/x.json')", "cannot read or write files"),
    ("ATTACH '{tmp}/other.duckdb'", "ATTACH statement is not allowed"),
    ("INSTALL httpfs", "INSTALL/LOAD is not allowed"),
    ("LOAD httpfs", "INSTALL/LOAD is not allowed"),
    ("SET enable_external_access = true", "SET/RESET/USE is not allowed"),
    ("RESET lock_configuration", "SET/RESET/USE is not allowed"),
    ("DROP TABLE runs", "DROP statement is not allowed"),
    ("DELETE FROM runs", "DELETE statement is not allowed"),
    ("UPDATE runs SET name = 'x'", "UPDATE statement is not allowed"),
    ("CREATE TABLE t AS SELECT 1", "CREATE statement is not allowed"),
    ("EXPORT DATABASE '{tmp}/dump'", "EXPORT statement is not allowed"),
    ("PRAGMA version", "PRAGMA is not allowed"),
    ("WITH d AS (DELETE FROM runs RETURNING *) SELECT * FROM d", "connection is read-only"),  # parses as SELECT
    ("CALL pragma_version()", "CALL/CHECKPOINT is not allowed"),
    ("CHECKPOINT", "CALL/CHECKPOINT is not allowed"),
    ("UPDATE EXTENSIONS", "not allowed"),
    ("PIVOT runs ON backbone", "PIVOT without an IN list"),
    ("EXPLAIN ANALYZE DELETE FROM runs", "EXPLAIN is allowed for a plain query only"),
    ("SELECT 1; DROP TABLE runs", "One statement at a time"),
    ("SELECT * FROM query('DROP TABLE runs')", "DuckDB could not run the query"),
    ("SELEC 1", "not SQL DuckDB can parse"),
    ("  -- nothing\n", "Write a query first"),
]


@pytest.mark.parametrize(("sql", "expected"), HOSTILE, ids=[h[0][:40] for h in HOSTILE])
def test_hostile_statements_are_refused_and_change_nothing(store, tmp_path, sql, expected):
    before = fingerprint(store)
    result = run_query(store, sql.format(tmp=tmp_path))
    assert not result.ok and result.frame is None
    assert expected in result.error
    assert fingerprint(store) == before
    assert list(tmp_path.iterdir()) == []  # no file written anywhere we pointed it


def test_a_query_that_would_run_forever_is_stopped(store):
    before = fingerprint(store)
    t0 = time.perf_counter()
    result = run_query(store, "SELECT count(*) FROM predictions a, predictions b, predictions c, predictions d",
                       time_limit=1.0)
    assert time.perf_counter() - t0 < 10
    assert not result.ok and "time limit (1 s)" in result.error
    assert fingerprint(store) == before


def test_the_connection_itself_refuses_files_extensions_and_settings(store, tmp_path):
    """The second layer, without the parser: what DuckDB refuses once the connection is locked down."""
    with duckdb.connect(str(store), read_only=True) as con:
        sql_console.lock_down(con)
        for sql in (f"COPY runs TO '{tmp_path}/x.csv'", f"ATTACH '{tmp_path}/o.duckdb'", "INSTALL httpfs",
                    "LOAD httpfs", "SET enable_external_access = true", "SET lock_configuration = false",
                    "DROP TABLE runs", "SELECT * FROM read_csv('/etc/passwd')"):
            with pytest.raises(duckdb.Error):
                con.execute(sql)
        settings = dict(con.execute("SELECT name, value FROM duckdb_settings()").fetchall())
    assert settings["enable_external_access"] == "false" and settings["lock_configuration"] == "true"
    assert settings["autoload_known_extensions"] == "false" and settings["autoinstall_known_extensions"] == "false"
    assert list(tmp_path.iterdir()) == []


def test_a_query_returns_the_right_rows(store):
    sql = "SELECT run_id, test_accuracy FROM runs ORDER BY run_id"
    result = run_query(store, sql)
    assert result.ok and not result.truncated
    with duckdb.connect(str(store), read_only=True) as con:
        expected = con.execute(sql).fetchall()
    assert list(result.frame.itertuples(index=False, name=None)) == expected
    # WITH, DESCRIBE, SUMMARIZE, static PIVOT and EXPLAIN read only and are allowed
    for allowed in ("WITH r AS (SELECT * FROM runs) SELECT count(*) FROM r", "DESCRIBE predictions",
                    "SUMMARIZE runs", "PIVOT predictions ON split IN ('test', 'val') USING count(*)",
                    "EXPLAIN SELECT * FROM runs"):
        assert run_query(store, allowed).ok, allowed


def test_rows_are_limited_and_blobs_shown_as_sizes(store):
    result = run_query(store, "SELECT * FROM range(25000)")
    assert result.ok and result.truncated and len(result.frame) == sql_console.MAX_ROWS
    result = run_query(store, "SELECT image_id, thumbnail FROM images LIMIT 2")
    assert result.frame["thumbnail"].str.endswith("bytes>").all()


def test_examples_run(store):
    for name, sql in sql_console.EXAMPLES.items():
        result = run_query(store, sql)
        assert result.ok, (name, result.error)
    pairs = run_query(store, sql_console.EXAMPLES["Most confused period pairs"]).frame
    assert (pairs["true_label"] != pairs["pred_label"]).all()


def test_console_shares_the_process_with_other_readers(store):
    """Another session's read-only connection is open: the console still locks down and runs, twice."""
    with duckdb.connect(str(store), read_only=True) as other:
        for _ in range(2):
            assert run_query(store, "SELECT count(*) AS n FROM runs").frame["n"].iloc[0] == 1
            assert "cannot read or write files" in run_query(store, "SELECT * FROM read_csv('/etc/passwd')").error
        assert other.execute("SELECT count(*) FROM runs").fetchone()[0] == 1


def page(monkeypatch, store, **params) -> AppTest:
    return open_dashboard(store, monkeypatch, "sql.py", **params)


def test_page_refuses_a_hostile_query_from_the_url(monkeypatch, store):
    before = fingerprint(store)
    at = page(monkeypatch, store, q="DROP TABLE runs")
    assert "DROP statement is not allowed" in at.error[0].value
    assert len(at.dataframe) == 1  # the table reference only, no result
    assert fingerprint(store) == before


def test_page_shows_a_good_query_and_runs_examples(monkeypatch, store):
    at = page(monkeypatch, store, q="SELECT run_id, name FROM runs")
    assert not at.error
    shown = at.dataframe[-1].value
    assert shown["run_id"].tolist() == ["tiny/head"] and shown["name"].tolist() == ["head"]
    assert at.text_area(key="w_q").value == "SELECT run_id, name FROM runs"
    at.button[1].click().run()  # "Most confused period pairs"
    assert not at.exception and not at.error
    assert at.query_params["q"] == sql_console.EXAMPLES["Most confused period pairs"]
    assert list(at.dataframe[-1].value.columns) == ["true_label", "pred_label", "errors", "runs"]


def test_page_on_a_missing_store_says_how_to_make_one(monkeypatch, tmp_path):
    at = page(monkeypatch, tmp_path / "nothing.duckdb")
    assert "make artifacts" in at.info[0].value
