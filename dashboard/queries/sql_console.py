"""The SQL page's engine: one read-only statement, in a process of its own, with row, byte, time and memory limits.

Four layers, so a hole in one is caught by the next:
1. the parser: exactly one statement, and it must be a query (SELECT, WITH … SELECT, VALUES,
   DESCRIBE, SUMMARIZE, SHOW, static PIVOT/UNPIVOT, or EXPLAIN of one of those);
2. the parsed tree (`json_serialize_sql`): every table function it calls must be one that reads
   no file and shows no setting or path (an allowlist, so a new file reader is refused by default),
   no setting is read (`current_setting`, `pg_settings`, `duckdb_databases`), no table name is a
   file (`FROM 'x.parquet'`), and no CTE writes;
3. the connection: the store opened read-only, then DuckDB's own switches (reader.LOCKDOWN): no
   file or network access, the local file system disabled (DuckDB otherwise lets a query read the
   open store's own file with read_blob, deleted rows and all), no extensions, no Python objects,
   no spilling, and the configuration locked;
4. the process (sql_worker.py): the query runs in a child process with an address-space cap and a
   deadline, because DuckDB's memory_limit and interrupt() do not reach inside one huge value
   (`repeat('x', 2000000000)`); the result streams back cut to MAX_ROWS rows, MAX_BYTES bytes and
   MAX_CELL_CHARS characters a cell.

Every refusal comes back as a `Result` with a message, never as an exception.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from dashboard.queries import query
from dashboard.queries.reader import LOCKDOWN, MEMORY_LIMIT, LockdownError, lock_down  # noqa: F401

MAX_ROWS = 10_000
MAX_BYTES = 16 * 2**20  # of the result as shown (after cutting cells): what the page, the browser and a CSV hold
MAX_CELL_CHARS = 10_000  # longer text is cut for display (an EXPLAIN plan fits)
TIME_LIMIT_S = 5.0
MAX_RUNNING = 2  # console queries at once in this dashboard process; each may use up to MEMORY_LIMIT
WORKER = Path(__file__).with_name("sql_worker.py")
WORKER_THREADS = max(1, min(4, os.cpu_count() or 1))
DUCKDB_SHARE = 0.6  # of the worker's memory for DuckDB's own limit; the rest is Python, Arrow and untracked vectors
START_ALLOWANCE_S = 15.0  # a worker still importing: how long before the dashboard kills it (it ends itself at the
# time limit, counted from sending the query to a ready worker, else from its reading the query)
EXAMPLES = {
    "Errors per artist": """\
SELECT p.run_id, i.artist,
       count(*) FILTER (WHERE NOT p.correct) AS errors,
       count(*) AS predictions,
       round(avg(CASE WHEN p.correct THEN 0 ELSE 1 END), 3) AS error_rate
FROM predictions p
JOIN runs r USING (run_id)
JOIN images i ON i.dataset_id = r.dataset_id AND i.image_id = p.image_id
WHERE p.task = 'period' AND p.split = 'test'
GROUP BY ALL
ORDER BY errors DESC, error_rate DESC""",
    "Most confused period pairs": """\
SELECT true_label, pred_label, sum(count) AS errors, count(DISTINCT run_id) AS runs
FROM confusion
WHERE task = 'period' AND split = 'test' AND true_label <> pred_label
GROUP BY ALL
ORDER BY errors DESC
LIMIT 20""",
    "Skipped images by reason": """\
SELECT d.name AS dataset, s.stage, s.reason, count(*) AS images, any_value(s.path) AS example
FROM skipped_images s JOIN datasets d USING (dataset_id)
GROUP BY ALL
ORDER BY images DESC""",
    "Least confident correct predictions": """\
SELECT p.run_id, p.image_id, p.true_label, round(p.confidence, 3) AS confidence, i.artist, i.title
FROM predictions p
JOIN runs r USING (run_id)
JOIN images i ON i.dataset_id = r.dataset_id AND i.image_id = p.image_id
WHERE p.correct AND p.task = 'period' AND p.split = 'test'
ORDER BY p.confidence
LIMIT 50""",
    "Annotations with their images": """\
SELECT a.created_at, a.verdict, a.author, a.note, a.run_id, i.period, i.artist, i.title
FROM annotations a
LEFT JOIN images i USING (dataset_id, image_id)
ORDER BY a.created_at DESC""",
}

_EXPLAIN_PREFIX = re.compile(r"^\s*EXPLAIN\s+(ANALY[SZ]E\s+)?(\([^()]*\)\s*)?", re.IGNORECASE)
_QUERY_KINDS = "SELECT, WITH … SELECT, VALUES, DESCRIBE, SUMMARIZE, SHOW, or EXPLAIN of a query"
_NO_FILES = ("this console cannot read or write files, load extensions or reach the network, and does not show the "
             "server's settings or paths; it queries the store's own tables only")

# Table functions that read no file and show no setting or path. Every other one (read_*, parquet_*, glob, query,
# query_table, sniff_csv, json_execute_serialized_sql, duckdb_settings, duckdb_databases, …) is refused.
ALLOWED_TABLE_FUNCTIONS = frozenset({
    "range", "generate_series", "unnest", "repeat", "repeat_row", "json_each", "json_tree", "test_all_types",
    "duckdb_tables", "duckdb_columns", "duckdb_views", "duckdb_schemas", "duckdb_types", "duckdb_functions",
    "duckdb_keywords", "duckdb_constraints", "duckdb_indexes", "duckdb_sequences", "duckdb_dependencies",
    "duckdb_optimizers", "duckdb_memory", "pragma_table_info", "pragma_version", "pragma_platform",
    "pragma_storage_info", "pragma_database_size", "pragma_collations", "pg_timezone_names", "icu_calendar_names",
})
DENIED_FUNCTIONS = frozenset({"current_setting"})  # scalar functions that show settings (paths among them)
_PATH_CHARS = re.compile(r"[/\\.:~]")  # a table name with these is a file (a replacement scan), never a store table
_CALLS = re.compile(r"([a-z_][a-z0-9_]*)\s*\(")


class Refused(Exception):
    """A statement the console will not run; str(exc) is the message shown to people."""


@dataclass
class Result:
    frame: pd.DataFrame | None = None
    truncated: bool = False
    seconds: float = 0.0
    error: str | None = None
    stopped: str | None = None  # why rows are missing: "rows" (MAX_ROWS) or "bytes" (MAX_BYTES)
    cells_cut: int = 0  # cells whose text was cut to MAX_CELL_CHARS

    @property
    def ok(self) -> bool:
        return self.error is None


def one_query(sql: str) -> duckdb.Statement:
    """The single read-only statement in `sql`, or Refused saying why not."""
    try:
        statements = duckdb.extract_statements(sql or "")
    except Exception as exc:  # ParserException, and ValueError for statement kinds the Python enum lacks
        raise Refused(f"That is not SQL DuckDB can parse: {_first_lines(exc)}") from None
    if not statements:
        raise Refused("Write a query first (a SELECT over the store's tables).")
    if len(statements) > 1:
        raise Refused(f"One statement at a time: found {len(statements)}. This console runs a single query "
                      f"({_QUERY_KINDS}); remove the other statements.")
    statement = statements[0]
    try:
        kind = statement.type
    except ValueError:  # a statement kind newer than the Python enum (e.g. UPDATE EXTENSIONS)
        raise Refused(f"Read-only console: this kind of statement is not allowed. Only queries that read run here "
                      f"({_QUERY_KINDS}).") from None
    if kind == duckdb.StatementType.EXPLAIN:
        inner = _EXPLAIN_PREFIX.sub("", statement.query, count=1)
        try:
            inner_kinds = [s.type for s in duckdb.extract_statements(inner)]
        except Exception:
            inner_kinds = []
        if inner_kinds != [duckdb.StatementType.SELECT]:
            raise Refused("EXPLAIN is allowed for a plain query only (EXPLAIN [ANALYZE] SELECT …).")
        check_reads(inner)
    elif kind != duckdb.StatementType.SELECT:
        raise Refused(_refusal(kind))
    else:
        check_reads(statement.query)
    return statement


_KIND_NAMES = {"LOAD": "INSTALL/LOAD", "SET": "SET/RESET/USE", "VACUUM": "VACUUM/ANALYZE", "CALL": "CALL/CHECKPOINT",
               "PRAGMA": "PRAGMA", "MULTI": "PIVOT without an IN list"}
_KIND_HINTS = {"CALL": " Table functions can be queried instead: SELECT * FROM pragma_version().",
               "PRAGMA": " Its table functions can be queried instead: SELECT * FROM pragma_table_info('runs').",
               "MULTI": " It runs several statements; list the values instead: PIVOT … ON column IN (…)."}


def _refusal(kind: duckdb.StatementType) -> str:
    """Why a statement kind is refused, with the read-only way to get the same answer where there is one."""
    name = _KIND_NAMES.get(kind.name) or f"{'an' if kind.name[0] in 'AEIOU' else 'a'} {kind.name} statement"
    return (f"Read-only console: {name} is not allowed.{_KIND_HINTS.get(kind.name, '')} Only queries that read run "
            f"here ({_QUERY_KINDS}); the store is changed only by the pipeline (and annotations by the Annotations "
            "page).")


def _first_lines(exc: Exception | str, n: int = 4) -> str:
    return "\n".join(str(exc).strip().splitlines()[:n])


# ---------------------------------------------------------------- layer 2: what the parsed query reads

_PARSER = duckdb.connect()  # in memory: parses and lists DuckDB's own catalog, never sees the store
_PARSER_LOCK = threading.Lock()


def _denied_names() -> tuple[frozenset[str], frozenset[str]]:
    """(scalar functions and macros, built-in views) that reach a refused table function or setting.

    Found from DuckDB's own catalog, so a view like pg_settings (over duckdb_settings()) or a macro
    like histogram (over query_table()) is refused with what it wraps."""
    with _PARSER_LOCK:
        table_functions = {name for (name,) in _PARSER.execute(
            "SELECT DISTINCT function_name FROM duckdb_functions() WHERE function_type IN ('table', 'table_macro')"
        ).fetchall()}
        macros = _PARSER.execute("SELECT function_name, macro_definition FROM duckdb_functions() "
                                 "WHERE function_type = 'macro'").fetchall()
        views = _PARSER.execute("SELECT view_name, sql FROM duckdb_views() WHERE internal").fetchall()
    refused = (table_functions - ALLOWED_TABLE_FUNCTIONS) | DENIED_FUNCTIONS

    def reaches(text: str | None) -> bool:
        return bool(refused & set(_CALLS.findall((text or "").lower())))

    functions = DENIED_FUNCTIONS | {name for name, body in macros if reaches(body)}
    return frozenset(functions), frozenset(name for name, body in views if reaches(body))


DENIED_SCALARS, DENIED_VIEWS = _denied_names()


def parse_tree(sql: str) -> dict:
    """DuckDB's parse of one SELECT as JSON (json_serialize_sql), or Refused when it cannot be checked."""
    with _PARSER_LOCK:
        [(text,)] = _PARSER.execute("SELECT json_serialize_sql(?::VARCHAR)", [sql]).fetchall()  # always one row
    tree = json.loads(text)
    if tree.get("error"):
        raise Refused(f"This query cannot be checked, so it is not run: {tree.get('error_message')}")
    return tree


def references(node: object, table_call: bool = False) -> Iterator[tuple[str, str]]:
    """Every (kind, name) the parsed query uses: "table function", "function", "table", or "write" (a CTE that
    writes). Walks the whole tree, so nesting (CTEs, subqueries, lambdas, SUMMARIZE) hides nothing."""
    if isinstance(node, list):
        for item in node:
            yield from references(item)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if "function_name" in node:
        yield ("table function" if table_call else "function"), str(node["function_name"]).lower()
    if kind in ("BASE_TABLE", "SHOW_REF") and node.get("table_name"):
        yield "table", str(node["table_name"]).strip('"').lower()
    if isinstance(kind, str) and kind.endswith("_QUERY_NODE"):  # INSERT/UPDATE/DELETE inside a CTE
        yield "write", kind.removesuffix("_QUERY_NODE")
    for key, value in node.items():
        yield from references(value, table_call=kind == "TABLE_FUNCTION" and key == "function")


def check_reads(sql: str) -> None:
    """Refused when the query would read a file, a setting or a path, or write (see the module's layer 2)."""
    for kind, name in references(parse_tree(sql)):
        if kind == "table function" and name not in ALLOWED_TABLE_FUNCTIONS:
            raise Refused(f"Refused: {name}() is not available here: {_NO_FILES}.")
        if kind == "function" and name in DENIED_SCALARS:
            raise Refused(f"Refused: {name}() is not available here: {_NO_FILES}.")
        if kind == "table" and (name in DENIED_VIEWS or _PATH_CHARS.search(name)):
            raise Refused(f"Refused: {name!r} is not a table of the store: {_NO_FILES}.")
        if kind == "write":
            raise Refused(f"Read-only console: a {name} inside a query is not allowed; the connection is read-only. "
                          f"Only queries that read run here ({_QUERY_KINDS}).")


# ---------------------------------------------------------------- layers 3 and 4: the worker process


def run_query(path: str | Path, sql: str, max_rows: int = MAX_ROWS, time_limit: float = TIME_LIMIT_S,
              max_bytes: int = MAX_BYTES, max_cell: int = MAX_CELL_CHARS) -> Result:
    """Run one user statement in a locked-down worker process; errors come back as `Result.error`."""
    started = time.perf_counter()
    try:
        statement = one_query(sql)
    except Refused as exc:
        return Result(error=str(exc))
    if not Path(path).exists():
        return Result(error=f"No store at {path}: run `make artifacts` first.")
    request = worker_request(path, statement.query, max_rows, max_bytes, max_cell, time_limit)
    if not _RUNNING.acquire(timeout=time_limit):
        return Result(error=f"The console is busy with {MAX_RUNNING} other queries; run it again in a moment.")
    try:
        status, out = _spawn(request, time_limit + START_ALLOWANCE_S)
    finally:
        _RUNNING.release()
    result = _read_worker(status, out, time_limit)
    result.seconds = time.perf_counter() - started
    return result


_RUNNING = threading.BoundedSemaphore(MAX_RUNNING)


def memory_bytes(limit: str = MEMORY_LIMIT) -> int:
    """'2GB' (DuckDB's notation: KB/MB/GB in powers of 1000, KiB/MiB/GiB in powers of 1024) in bytes."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]?i?B)\s*", limit, re.IGNORECASE)
    if not match:
        raise ValueError(f"not a memory size: {limit!r}")
    unit = match.group(2).upper()
    base = 1024 if "I" in unit else 1000
    return int(float(match.group(1)) * base ** " KMGT".index(unit[0] if unit != "B" else " "))


SEALED = ["disabled_filesystems", "'LocalFileSystem'"]  # the worker's must-have, whether or not LOCKDOWN lists it


def worker_settings() -> list[list[str]]:
    """reader.LOCKDOWN for the worker: DuckDB's share of the memory, the local file system off (after external
    access, which needs it to switch off), and a fixed thread count, all before the lock."""
    duckdb_memory = f"'{int(memory_bytes() * DUCKDB_SHARE) // 2**20}MiB'"
    settings = [[name, duckdb_memory if name == "memory_limit" else value] for name, value, _, _ in LOCKDOWN
                if name != SEALED[0]]
    lock = next(i for i, (name, _) in enumerate(settings) if name == "lock_configuration")
    return settings[:lock] + [SEALED, ["threads", str(WORKER_THREADS)]] + settings[lock:]


def worker_request(path: str | Path, sql: str, max_rows: int, max_bytes: int, max_cell: int,
                   time_limit: float) -> dict:
    return {"path": str(Path(path).resolve()), "sql": sql, "settings": worker_settings(),
            "required": [[name, expected] for name, _, expected, required in LOCKDOWN if required],
            "max_rows": max_rows, "max_bytes": max_bytes, "max_cell": max_cell, "time_limit": time_limit,
            "memory_bytes": memory_bytes()}


def _spawn(request: dict, timeout: float) -> tuple[int | None, bytes]:
    """Run a worker on `request`: (its exit status, or None when it was killed at the deadline; its output)."""
    proc = _take_worker()
    if _ready(proc):  # imports done: the limit counts from now, as the user sees it
        request = {**request, "deadline_wall": time.time() + request["time_limit"]}
    try:
        out, _ = proc.communicate(json.dumps(request).encode("utf-8"), timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None, b""
    return proc.returncode, out


_spare: subprocess.Popen | None = None
_spare_lock = threading.Lock()


def _take_worker() -> subprocess.Popen:
    """A started worker, and a spare started for the next query: Python and its imports take 0.2–0.5 s, the
    query itself often 20 ms. The spare only waits for its request (no store open, no lock held); it goes when
    the dashboard does, as its stdin closes. No query, no spare: a dashboard nobody asks SQL of pays nothing."""
    global _spare
    with _spare_lock:
        proc, _spare = _spare, _start_worker()
    return proc if proc is not None and proc.poll() is None else _start_worker()


def _ready(proc: subprocess.Popen) -> bool:
    """Whether the worker has said (on stderr) that its imports are done and it waits for a query."""
    return proc.stderr is not None and bool(select.select([proc.stderr], [], [], 0)[0])


def warm_up() -> None:
    """Start the spare worker now (the SQL page calls this as it opens), so the user's first query does not wait
    for Python and its imports: that wait counted against nothing and made a 5 s limit take 9 s."""
    global _spare
    with _spare_lock:
        if _spare is None or _spare.poll() is not None:
            _spare = _start_worker()


def _start_worker() -> subprocess.Popen:
    # Allocators that do not reserve address space ahead (glibc with few arenas; Arrow's default mimalloc reserved
    # ~1 GB more than it used, which the address-space cap counts).
    env = {**os.environ, "MALLOC_ARENA_MAX": "2", "ARROW_DEFAULT_MEMORY_POOL": "system"}
    return subprocess.Popen([sys.executable, "-I", str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)


def _read_worker(status: int | None, out: bytes, time_limit: float) -> Result:
    """The worker's answer as a Result: its table, or its failure in words."""
    if status is None or status == WORKER_TIMEOUT_EXIT:
        return Result(error=explain("interrupt", "", time_limit))
    header_line, _, body = out.partition(b"\n")
    try:
        header = json.loads(header_line)
    except ValueError:
        why = f"signal {-status}" if status < 0 else f"exit status {status}"
        return Result(error=f"The query's process ended without an answer ({why}); most likely it ran out of memory "
                            f"(the console's limit is {MEMORY_LIMIT}). Filter or aggregate first.")
    if not header.get("ok"):
        return Result(error=explain(header.get("kind", "other"), header.get("message", ""), time_limit))
    table = pa.ipc.open_stream(body).read_all()
    return Result(_frame(table), header["stopped"] is not None, stopped=header["stopped"],
                  cells_cut=header["cells_cut"])


WORKER_TIMEOUT_EXIT = 3  # sql_worker.TIMEOUT_EXIT (not imported: the worker module stays free of the dashboard)


def explain(kind: str, text: str, time_limit: float) -> str:
    """A failure in words: what a limit or the lock-down refused, or DuckDB's own message."""
    if kind == "interrupt":
        return (f"Stopped: the query ran past the console's time limit ({time_limit:g} s). Filter or aggregate "
                "before joining, or add a LIMIT.")
    if kind == "memory":
        return (f"Refused: the query needed more than the console's memory limit ({MEMORY_LIMIT}). Filter or "
                "aggregate first, or select fewer or shorter values.")
    if kind == "lockdown":
        return f"Refused: {text}; nothing was run."
    if kind == "busy":
        return "The store is busy (the pipeline is writing it); run the query again in a moment."
    if kind == "permission":
        return f"Refused: {_NO_FILES}.\n\nDuckDB said: {_first_lines(text, 2)}"
    if "read-only mode" in text or "configuration has been locked" in text:
        return f"Refused: the console's connection is read-only and its settings are locked.\n\nDuckDB said: {text}"
    if kind == "duckdb":
        return f"DuckDB could not run the query:\n\n{_first_lines(text, 6)}"
    return f"The query failed: {_first_lines(text, 2)}"


def _frame(table: pa.Table) -> pd.DataFrame:
    """The worker's table for display and CSV (its blobs are already sizes, its long texts cut)."""
    return table.rename_columns(_unique(table.column_names)).to_pandas()


def _unique(columns: list[str]) -> list[str]:
    """Duplicate column names (SELECT a.x, b.x) made distinct, as a DataFrame for display needs."""
    seen: dict[str, int] = {}
    out = []
    for name in columns:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def tables() -> pd.DataFrame:
    """The store's tables and columns, for the page's reference panel."""
    return query("""SELECT table_name, string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position)
                           AS columns
                    FROM information_schema.columns WHERE table_schema = 'main'
                    GROUP BY table_name ORDER BY table_name""")
