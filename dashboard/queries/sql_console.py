"""The SQL page's engine: one read-only statement on a locked-down connection, with row and time limits.

Three layers, so a hole in one is caught by the next:
1. the parser: exactly one statement, and it must be a query (SELECT, WITH … SELECT, VALUES,
   DESCRIBE, SUMMARIZE, SHOW, static PIVOT/UNPIVOT, or EXPLAIN of one of those);
2. the connection: the store opened read-only, then DuckDB's own switches — no file or network
   access, no extension installs or loads, no spilling to disk — and the configuration locked;
3. limits: at most MAX_ROWS rows fetched (the result streams, so a huge result is never built)
   and a timer that interrupts the query after TIME_LIMIT_S seconds.

Every refusal comes back as a `Result` with a message, never as an exception.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from dashboard.queries import query
from dashboard.queries.reader import MEMORY_LIMIT, READER, LockdownError, file_version, lock_down  # noqa: F401

MAX_ROWS = 10_000
TIME_LIMIT_S = 5.0
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


class Refused(Exception):
    """A statement the console will not run; str(exc) is the message shown to people."""


@dataclass
class Result:
    frame: pd.DataFrame | None = None
    truncated: bool = False
    seconds: float = 0.0
    error: str | None = None

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
    elif kind != duckdb.StatementType.SELECT:
        raise Refused(_refusal(kind))
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


def _first_lines(exc: Exception, n: int = 4) -> str:
    return "\n".join(str(exc).strip().splitlines()[:n])


def run_query(path: str | Path, sql: str, max_rows: int = MAX_ROWS, time_limit: float = TIME_LIMIT_S) -> Result:
    """Run one user statement on a locked-down read-only connection; errors come back as `Result.error`."""
    started = time.perf_counter()
    try:
        statement = one_query(sql)
    except Refused as exc:
        return Result(error=str(exc))
    if not Path(path).exists():
        return Result(error=f"No store at {path}: run `make artifacts` first.")
    fired = threading.Event()
    try:
        with READER.cursor(path, file_version(path)) as con:  # locked down (see reader.py)

            def stop() -> None:
                fired.set()
                with contextlib.suppress(Exception):  # the query may have just finished and closed
                    con.interrupt()

            timer = threading.Timer(time_limit, stop)
            timer.daemon = True
            timer.start()
            try:
                cursor = con.execute(statement)
                rows = cursor.fetchmany(max_rows + 1)
                columns = [d[0] for d in cursor.description or []]
            finally:
                timer.cancel()
    except Refused as exc:
        return Result(error=str(exc), seconds=time.perf_counter() - started)
    except Exception as exc:  # every failure is a message on the page, never a traceback
        return Result(error=_explain_error(exc, fired.is_set(), time_limit), seconds=time.perf_counter() - started)
    if fired.is_set():  # the interrupt landed between the last row and the cancel: still over the limit
        return Result(error=_explain_error(duckdb.InterruptException(), True, time_limit),
                      seconds=time.perf_counter() - started)
    frame = _frame(rows[:max_rows], columns)
    return Result(frame, len(rows) > max_rows, time.perf_counter() - started)


def _explain_error(exc: Exception, timed_out: bool, time_limit: float) -> str:
    """A failure in words: what the limit or the lock-down refused, or DuckDB's own message."""
    if timed_out or isinstance(exc, duckdb.InterruptException):
        return (f"Stopped: the query ran past the console's time limit ({time_limit:g} s). Filter or aggregate "
                "before joining, or add a LIMIT.")
    if isinstance(exc, LockdownError):
        return f"Refused: {exc}; nothing was run."
    if isinstance(exc, duckdb.PermissionException):
        return ("Refused: this console cannot read or write files, load extensions or reach the network; it queries "
                f"the store's own tables only.\n\nDuckDB said: {_first_lines(exc, 2)}")
    if isinstance(exc, duckdb.OutOfMemoryException):
        return (f"Refused: the query needed more than the console's memory limit ({MEMORY_LIMIT}). Filter or "
                "aggregate first.")
    text = str(exc)
    if "read-only mode" in text or "configuration has been locked" in text:
        return f"Refused: the console's connection is read-only and its settings are locked.\n\nDuckDB said: {text}"
    if isinstance(exc, duckdb.Error):
        return f"DuckDB could not run the query:\n\n{_first_lines(exc, 6)}"
    return f"The query failed: {type(exc).__name__}: {_first_lines(exc, 2)}"


def _frame(rows: list[tuple], columns: list[str]) -> pd.DataFrame:
    """Rows as a table a browser can show and a CSV can hold: blobs (thumbnails, heatmaps) become their size."""
    frame = pd.DataFrame.from_records(rows, columns=_unique(columns))
    for column in frame.columns:
        values = frame[column]
        if values.dtype == object and values.map(lambda v: isinstance(v, bytes | bytearray)).any():
            frame[column] = values.map(lambda v: f"<{len(v):,} bytes>" if isinstance(v, bytes | bytearray) else v)
    return frame


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
