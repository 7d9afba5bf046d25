"""The SQL console: hostile statements are refused with a message and leave the store untouched; queries work."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from dashboard.queries import sql_console
from dashboard.queries.sql_console import run_query
from tests.conftest import open_dashboard

pytestmark = pytest.mark.slow  # every test reads a store built by a session fixture (a run trained)

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
    ("SELECT * FROM query('DROP TABLE runs')", "query() is not available here"),
    ("SELEC 1", "not SQL DuckDB can parse"),
    ("  -- nothing\n", "Write a query first"),
]


NOT_HERE = "is not available here"
NOT_A_TABLE = "is not a table of the store"
# Reading the store's own file (DuckDB allows it even with external access off: deleted rows come back), dressed up
# as an attacker would: case, quotes, comments, schema names, CTEs, subqueries, LATERAL, set operations, SUMMARIZE,
# EXPLAIN ANALYZE, PIVOT, replacement scans, macros and functions that run SQL given as text.
STORE_FILE = [
    ("SELECT octet_length(content) FROM read_blob('{store}')", NOT_HERE),
    ("SELECT * FROM READ_BLOB('{store}')", NOT_HERE),
    ("SELECT * FROM \"Read_Blob\"('{store}')", NOT_HERE),
    ("SELECT * FROM/**/read_blob/* a comment */('{store}')", NOT_HERE),
    ("SELECT * FROM system.main.read_blob('{store}')", NOT_HERE),
    ("WITH b AS (SELECT * FROM read_blob('{store}')) SELECT octet_length(content) FROM b", NOT_HERE),
    ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r, read_text('{store}') WHERE n < 2) "
     "SELECT * FROM r", NOT_HERE),
    ("SELECT (SELECT octet_length(content) FROM read_blob('{store}'))", NOT_HERE),
    ("SELECT * FROM runs WHERE EXISTS (SELECT 1 FROM read_text('{store}.wal'))", NOT_HERE),
    ("SELECT 1 FROM runs, LATERAL (SELECT * FROM read_blob('{store}'))", NOT_HERE),
    ("SELECT filename FROM runs UNION ALL BY NAME SELECT filename FROM read_blob('{store}')", NOT_HERE),
    ("SUMMARIZE SELECT * FROM read_blob('{store}')", NOT_HERE),
    ("DESCRIBE SELECT * FROM read_blob('{store}')", NOT_HERE),
    ("EXPLAIN ANALYZE SELECT * FROM read_blob('{store}')", NOT_HERE),
    ("PIVOT (SELECT * FROM read_blob('{store}')) ON filename IN ('x') USING count(*)", NOT_HERE),
    ("SELECT * FROM read_duckdb('{store}')", NOT_HERE),
    ("SELECT * FROM read_csv(['{store}'], all_varchar = true)", NOT_HERE),
    ("SELECT * FROM sniff_csv('{store}')", NOT_HERE),
    ("SELECT * FROM parquet_metadata('{store}')", NOT_HERE),
    ("SELECT * FROM glob('{store}*')", NOT_HERE),
    ("SELECT * FROM query_table('{store}')", NOT_HERE),
    ("SELECT * FROM histogram('{store}', x)", NOT_HERE),  # a built-in macro over query_table()
    ("SELECT * FROM query('SELECT * FROM read_blob(''{store}'')')", NOT_HERE),
    ("SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT * FROM read_blob(''{store}'')'))",
     NOT_HERE),
    ("SELECT * FROM '{store}'", NOT_A_TABLE),  # a replacement scan: the name is a file
    ("FROM '{store}.wal'", NOT_A_TABLE),
    ("SELECT * FROM \"{store}\"", NOT_A_TABLE),
    ("SELECT * FROM 'runs.csv'", NOT_A_TABLE),
]
# Where the store and the server's folders are: settings, databases, secrets, temporary files, by every door.
PATHS = [
    ("SELECT * FROM duckdb_settings()", NOT_HERE),
    ("SELECT value FROM duckdb_settings() WHERE name = 'allowed_paths'", NOT_HERE),
    ("SELECT current_setting('temp_directory')", NOT_HERE),
    ("SELECT 'temp_directory'.current_setting()", NOT_HERE),
    ("SELECT list_transform(['allowed_paths'], lambda x: current_setting(x))", NOT_HERE),
    ("SELECT * FROM runs ORDER BY current_setting('home_directory')", NOT_HERE),
    ("SELECT * FROM duckdb_databases()", NOT_HERE),
    ("SELECT path FROM duckdb_databases", NOT_A_TABLE),  # the built-in view over it
    ("SELECT * FROM system.main.pragma_database_list", NOT_A_TABLE),
    ("SELECT * FROM pg_catalog.pg_settings", NOT_A_TABLE),
    ("SELECT * FROM \"PG_SETTINGS\"", NOT_A_TABLE),
    ("SUMMARIZE pg_settings", NOT_A_TABLE),
    ("SELECT * FROM duckdb_temporary_files()", NOT_HERE),
    ("SELECT * FROM duckdb_extensions()", NOT_HERE),
    ("SELECT * FROM duckdb_secrets()", NOT_HERE),
    ("SELECT * FROM duckdb_profiling_settings()", NOT_HERE),
    ("SELECT * FROM duckdb_external_file_cache()", NOT_HERE),
    ("SELECT * FROM query('SELECT * FROM duckdb_settings()')", NOT_HERE),
    ("PRAGMA database_list", "PRAGMA is not allowed"),
    ("WITH d AS (UPDATE runs SET name = current_setting('temp_directory') RETURNING *) SELECT * FROM d",
     "connection is read-only"),
]


@pytest.mark.parametrize(("sql", "expected"), HOSTILE + STORE_FILE + PATHS,
                         ids=[h[0][:60] for h in HOSTILE + STORE_FILE + PATHS])
def test_hostile_statements_are_refused_and_change_nothing(store, tmp_path, sql, expected):
    before = fingerprint(store)
    result = run_query(store, sql.format(tmp=tmp_path, store=store))
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
                    "DROP TABLE runs", "SELECT * FROM read_csv('/etc/passwd')",
                    f"SELECT * FROM read_blob('{store}')", f"SELECT * FROM read_text('{store}')",
                    f"SELECT * FROM '{store}'", "SET disabled_filesystems = ''"):
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


def worker(store: Path, sql: str) -> dict:
    """The worker's header for `sql`, with no parser in front of it: what the connection alone refuses."""
    request = sql_console.worker_request(store, sql, 10, 2**20, 100, 5.0)
    status, out = sql_console._spawn(request, 60)
    assert status == 0
    return json.loads(out.partition(b"\n")[0])


def test_the_worker_connection_cannot_read_the_store_file(store):
    """Layer 3 without layer 2: DuckDB keeps the open store in allowed_paths, so external access off is not
    enough; with the local file system off, even the store's own file is out of reach."""
    for sql in (f"SELECT * FROM read_blob('{store}')", f"SELECT * FROM read_text('{store}')",
                f"SELECT * FROM '{store}'", f"SELECT * FROM read_duckdb('{store}')"):
        header = worker(store, sql)
        assert header["ok"] is False and header["kind"] == "permission", (sql, header)
    assert worker(store, "SELECT count(*) FROM runs")["ok"] is True


def test_what_the_console_may_show_holds_no_path(store):
    """The catalog queries people use still work, and none of them shows where the store or the server lives."""
    folder = str(store.parent)
    for sql in ("SELECT * FROM duckdb_tables()", "SELECT * FROM duckdb_columns()", "SELECT * FROM duckdb_views()",
                "SELECT * FROM information_schema.tables", "SELECT * FROM information_schema.schemata",
                "SHOW ALL TABLES", "SHOW DATABASES", "SELECT current_database()",
                "SELECT * FROM pragma_database_size()", "SELECT * FROM pragma_table_info('runs')",
                "SELECT * FROM pragma_version()",
                "SELECT * FROM duckdb_schemas()", "SELECT * FROM duckdb_functions() LIMIT 50"):
        result = run_query(store, sql)
        assert result.ok, (sql, result.error)
        assert folder not in result.frame.to_csv(), sql


def test_page_keeps_no_large_result_in_the_session(monkeypatch, store):
    at = page(monkeypatch, store, q="SELECT repeat('x', 100000) AS long FROM range(10000)")
    assert not at.exception and not at.error
    assert "the console returns at most 16 MB" in at.warning[0].value
    assert "long values are cut" in at.warning[0].value
    shown = at.dataframe[-1].value
    assert 0 < len(shown) < 10_000 and shown["long"].str.len().max() == sql_console.MAX_CELL_CHARS + 1
    assert "_sql_last" not in at.session_state
    at = page(monkeypatch, store, q="SELECT run_id FROM runs")  # a small one is kept, to redraw without running
    assert at.session_state["_sql_last"][1].frame["run_id"].tolist() == ["tiny/head"]


def test_page_shows_an_error_that_quotes_the_query_as_text(monkeypatch, store):
    """A shared link writes the query, and errors quote it: Markdown in it must not fetch an image."""
    at = page(monkeypatch, store, q='SELECT * FROM "![t](http://127.0.0.1:8799/p.png)"')
    body = at.error[0].value
    assert NOT_A_TABLE in body and "![" not in body and "\\!\\[t\\]\\(http\\://127" in body
