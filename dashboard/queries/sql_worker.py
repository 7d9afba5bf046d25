"""The SQL console's worker: one user query in a process of its own, so its memory and time limits hold.

DuckDB's memory_limit bounds its buffer pool, not the strings and lists a query builds on the
way: `SELECT repeat('x', 2000000000)` took 4 GB and 9–13 s in the dashboard's own process, and
neither the limit nor `interrupt()` reaches inside that one function call. In this process an
address-space cap (RLIMIT_AS) makes such an allocation fail at once, as DuckDB's out-of-memory
error. The time limit counts from the moment this process reads its request: opening the store
and the query both spend it. A watchdog interrupts the query HARD_GRACE_S before the limit and
ends the process at it if the interrupt does not land; the dashboard kills it in any case. The
limit counts from the moment the dashboard sent the query when this process had said it was ready
(a line on stderr once its imports are done), else from the moment it reads the query. (Counted
from the query's own start, after opening the store, with a second's grace after it, the page's
5 s limit was 9.2 s in a browser.)

The result streams as Arrow batches: long text is cut, blobs become their size, nested values
become short text, and reading stops at the row and byte budgets, so what comes back is small
whatever the query returns.

Protocol: run as `python -I sql_worker.py` with a JSON request on stdin (see `Request`). It writes
one JSON header line, then (when the header says ok) an Arrow IPC stream. It imports only the
standard library, duckdb and pyarrow: no streamlit, no dashboard package.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import sys
import threading
import time
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

TIMEOUT_EXIT = 3  # the watchdog's exit status: the interrupt did not stop the query in time
HARD_GRACE_S = 0.5  # the interrupt comes this long before the limit; the process ends at the limit
BATCH_ROWS = 1024


@dataclass
class Request:
    path: str
    sql: str
    settings: list[list[str]]  # [name, value to SET], in order; lock_configuration last
    required: list[list[str]]  # [name, value duckdb_settings() must then report]
    max_rows: int
    max_bytes: int
    max_cell: int
    time_limit: float  # seconds from reading the request to the answer
    memory_bytes: int  # the process's address-space cap
    deadline_wall: float | None = None  # time.time() of the limit, when the dashboard sent to a ready worker


class WorkerError(Exception):
    """A failure with a kind the console turns into words: interrupt, memory, permission, lockdown, busy, duckdb."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def cap_memory(limit: int) -> None:
    """Every allocation past `limit` bytes of address space fails (DuckDB then raises out-of-memory)."""
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def open_store(path: str, wait: float) -> duckdb.DuckDBPyConnection:
    """The store, read-only; retried while a writer holds DuckDB's file lock."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return duckdb.connect(path, read_only=True)
        except duckdb.Error as exc:
            if "lock" not in str(exc).lower():
                raise
            if time.monotonic() > deadline:
                raise WorkerError("busy", str(exc)) from None
            time.sleep(0.1)


def seal(con: duckdb.DuckDBPyConnection, request: Request) -> None:
    """Apply the lockdown, check DuckDB reports it, and check the store file itself cannot be read as a file."""
    for name, value in request.settings:
        with contextlib.suppress(duckdb.Error):  # verified below
            con.execute(f"SET {name} = {value}")
    actual = dict(con.execute("SELECT name, value FROM duckdb_settings()").fetchall())
    for name, expected in request.required:
        if str(actual.get(name)).lower() != expected:
            raise WorkerError("lockdown", f"could not lock the connection down ({name} = {actual.get(name)})")
    try:  # DuckDB lists the open database among the allowed paths even with external access off
        con.execute("SELECT 1 FROM read_blob(?) LIMIT 0", [request.path]).fetchall()
    except duckdb.PermissionException:
        return
    raise WorkerError("lockdown", "the store file itself is readable as a file")


def start_watchdog(con: duckdb.DuckDBPyConnection, deadline: float) -> list[threading.Timer]:
    """Interrupt just before the deadline; end the process at it if the query is stuck inside one operator."""
    left = deadline - time.monotonic()
    timers = [threading.Timer(max(0.0, left - HARD_GRACE_S), con.interrupt), threading.Timer(max(0.0, left), _time_out)]
    for timer in timers:
        timer.daemon = True
        timer.start()
    return timers


def _time_out() -> None:
    os._exit(TIMEOUT_EXIT)


def cut_text(col: pa.Array, max_cell: int) -> tuple[pa.Array, int]:
    """Text longer than `max_cell` characters cut there, with an ellipsis; and how many cells were cut."""
    long = pc.fill_null(pc.greater(pc.utf8_length(col), max_cell), False)
    count = pc.sum(long).as_py() or 0
    if count:
        col = pc.if_else(long, pc.binary_join_element_wise(pc.utf8_slice_codeunits(col, 0, max_cell), "…", ""), col)
    return col, count


def as_text(values: list, max_cell: int) -> tuple[pa.Array, int]:
    """Python values as short text (nested lists, structs, maps and other types a table cannot show plainly)."""
    texts = [None if v is None else str(v) for v in values]
    cut = sum(1 for t in texts if t is not None and len(t) > max_cell)
    return pa.array([t if t is None or len(t) <= max_cell else t[:max_cell] + "…" for t in texts], pa.string()), cut


def shrink_column(col: pa.Array, max_cell: int) -> tuple[pa.Array, int]:
    """A column as the console shows it: cut text, blob sizes, nested values as cut text."""
    kind = col.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return cut_text(col, max_cell)
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        sizes = pc.binary_length(col).to_pylist()
        return pa.array([None if n is None else f"<{n:,} bytes>" for n in sizes], pa.string()), 0
    if pa.types.is_nested(kind) or isinstance(kind, pa.ExtensionType) or pa.types.is_string_view(kind):
        return as_text(col.to_pylist(), max_cell)
    return col, 0


def shrink(batch: pa.RecordBatch, max_cell: int) -> tuple[pa.RecordBatch, int]:
    """Every column shrunk (see shrink_column); and how many cells were cut."""
    columns, cut = [], 0
    for col in batch.columns:
        col, n = shrink_column(col, max_cell)
        columns.append(col)
        cut += n
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names), cut


def rows_within(batch: pa.RecordBatch, budget: int) -> int:
    """The most leading rows of `batch` whose bytes fit in `budget` (binary search over slices)."""
    lo, hi = 0, batch.num_rows
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if batch.slice(0, mid).nbytes <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def stream(con: duckdb.DuckDBPyConnection, request: Request) -> tuple[pa.Schema, list[pa.RecordBatch], dict]:
    """Read the result batch by batch until it ends or a budget (rows, bytes) is spent."""
    reader = con.sql(request.sql).to_arrow_reader(BATCH_ROWS)
    batches: list[pa.RecordBatch] = []
    rows = size = cut = 0
    stopped = None
    schema = None
    for raw in reader:
        batch, n = shrink(raw, request.max_cell)
        schema = schema or batch.schema
        if rows + batch.num_rows > request.max_rows:
            batch, stopped = batch.slice(0, request.max_rows - rows), "rows"
        if size + batch.nbytes > request.max_bytes:
            batch, stopped = batch.slice(0, rows_within(batch, request.max_bytes - size)), "bytes"
        batches.append(batch)
        rows, size, cut = rows + batch.num_rows, size + batch.nbytes, cut + n
        if stopped:
            break
    if schema is None:  # no rows: the schema alone, shrunk the same way
        schema = shrink(pa.RecordBatch.from_pylist([], schema=reader.schema), request.max_cell)[0].schema
    return schema, batches, {"rows": rows, "bytes": size, "cells_cut": cut, "stopped": stopped}


def run(request: Request) -> tuple[dict, bytes]:
    """The header and the Arrow IPC bytes of one query, or an error header."""
    started = time.perf_counter()
    left = request.time_limit if request.deadline_wall is None else request.deadline_wall - time.time()
    deadline = time.monotonic() + left
    con = open_store(request.path, deadline - time.monotonic() - HARD_GRACE_S)  # "busy" comes back in time
    try:
        seal(con, request)
        timers = start_watchdog(con, deadline)
        try:
            schema, batches, info = stream(con, request)
        finally:
            for timer in timers:
                timer.cancel()
    finally:
        with contextlib.suppress(duckdb.Error):
            con.close()
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
    return {"ok": True, "seconds": time.perf_counter() - started, **info}, sink.getvalue()


def classify(exc: BaseException) -> WorkerError:
    """The kind of a failure, for the console's message."""
    if isinstance(exc, WorkerError):
        return exc
    text = str(exc)
    if isinstance(exc, duckdb.InterruptException):
        return WorkerError("interrupt", text)
    if isinstance(exc, duckdb.OutOfMemoryException | MemoryError | pa.ArrowMemoryError) or "Out of Memory" in text:
        return WorkerError("memory", text)
    if isinstance(exc, duckdb.PermissionException):
        return WorkerError("permission", text)
    if isinstance(exc, duckdb.Error):
        return WorkerError("duckdb", text)
    return WorkerError("other", f"{type(exc).__name__}: {text}")


def main() -> int:
    sys.stderr.write("ready\n")  # the dashboard then counts the time limit from sending the query
    sys.stderr.flush()
    text = sys.stdin.read()  # a spare worker waits here, imports done, until a query comes
    if not text:  # the dashboard went away before it needed this one
        return 0
    request = Request(**json.loads(text))
    cap_memory(request.memory_bytes)
    try:
        header, body = run(request)
    except BaseException as exc:  # every failure goes back as a header, never as a traceback
        error = classify(exc)
        header, body = {"ok": False, "kind": error.kind, "message": str(error)}, b""
    out = sys.stdout.buffer
    out.write(json.dumps(header).encode("utf-8") + b"\n" + body)
    out.flush()
    return 0


if __name__ == "__main__":
    status = main()
    os._exit(status)  # the answer is out: skip tearing down DuckDB and Arrow (100–300 ms the dashboard would wait)
