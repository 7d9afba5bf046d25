"""One read-only connection to the store, shared by every session of this dashboard process.

Opening the file costs 15–30 ms and starts with an empty buffer pool, so at 400k predictions
a page whose queries each opened the store spent most of its time re-reading the same column
blocks (BENCHMARKS.md). The shared connection keeps them warm; every query gets its own cursor.
It lets go of the file when a writer waits (the pipeline's or an annotation's: they raise
`pipeline.store.writer_flag` while they wait), after IDLE_SECONDS without a query, and when the
store is replaced, so the pipeline is never kept out for longer than the query in flight.

The instance is locked down as the SQL console needs it (no file or network access, settings
locked): DuckDB shares one instance per file and process, and the console's connection is one
of its cursors.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from pipeline import store as pipeline_store

IDLE_SECONDS = 30.0
WATCH_SECONDS = 0.1
MEMORY_LIMIT = "2GB"


def file_version(path: str | Path) -> float:
    """Changes whenever a writer commits (the file or its WAL): keys the connection and every cached result."""
    path = Path(path)
    wal = path.with_name(path.name + ".wal")
    stamps = [p.stat().st_mtime_ns for p in (path, wal) if p.exists()]
    return max(stamps) if stamps else 0.0


class SharedReader:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._key: tuple[str, float] | None = None
        self._in_use = 0
        self._last_used = 0.0
        self._watcher: threading.Thread | None = None

    @contextmanager
    def cursor(self, path: str | Path, version: float, wait_seconds: float = 15.0
               ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor on the shared connection; a connection of its own while a writer waits."""
        path = str(path)
        if pipeline_store.writer_waiting(path):
            with pipeline_store.connect(path, read_only=True, wait_seconds=wait_seconds) as con:
                lock_down(con)
                yield con
            return
        with self._lock:
            if self._con is None or self._key != (path, version):
                self._close()
                con = pipeline_store.open_connection(path, read_only=True, wait_seconds=wait_seconds)
                try:
                    lock_down(con)
                except BaseException:
                    con.close()
                    raise
                self._con, self._key = con, (path, version)
                self._start_watcher()
            self._in_use += 1
            cur = self._con.cursor()
        try:
            yield cur
        finally:
            cur.close()
            with self._lock:
                self._in_use -= 1
                self._last_used = time.monotonic()

    def release(self) -> None:
        """Close the shared connection now if no query is using it (tests, and writes from this process)."""
        with self._lock:
            if self._in_use == 0:
                self._close()

    def _close(self) -> None:
        if self._con is not None:
            self._con.close()
        self._con, self._key = None, None

    def _start_watcher(self) -> None:
        if self._watcher is None or not self._watcher.is_alive():
            self._watcher = threading.Thread(target=self._watch, name="periodeye-store-reader", daemon=True)
            self._watcher.start()

    def _watch(self) -> None:
        while True:
            time.sleep(WATCH_SECONDS)
            with self._lock:
                if self._con is None:
                    self._watcher = None
                    return
                idle = time.monotonic() - self._last_used > IDLE_SECONDS
                if self._in_use == 0 and (idle or pipeline_store.writer_waiting(self._key[0])):
                    self._close()


# (setting, value to SET, value duckdb_settings() then reports, must hold for the console to run), in order:
# every SET must come before the lock, which forbids later changes (its own undoing too).
LOCKDOWN = (
    ("temp_directory", "''", "", False),  # no spilling: a query that needs more than memory_limit fails instead
    ("memory_limit", f"'{MEMORY_LIMIT}'", None, False),
    ("enable_external_access", "false", "false", True),  # no files (read_csv, COPY, ATTACH, glob), no network
    ("autoinstall_known_extensions", "false", "false", True),
    ("autoload_known_extensions", "false", "false", True),
    ("lock_configuration", "true", "true", True),  # last: SET/RESET of anything now fails
)


class LockdownError(RuntimeError):
    """DuckDB did not report a required setting after the lockdown: nothing may run on this connection."""


def lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """Apply LOCKDOWN, then check DuckDB reports every required value (an instance this process already
    shares is locked down already: the SETs then fail, but the values hold)."""
    for name, value, _, _ in LOCKDOWN:
        with contextlib.suppress(duckdb.Error):  # verified below
            con.execute(f"SET {name} = {value}")
    names = [name for name, *_ in LOCKDOWN]
    actual = dict(con.execute("SELECT name, value FROM duckdb_settings() WHERE list_contains(?, name)",
                              [names]).fetchall())
    for name, _, expected, required in LOCKDOWN:
        if required and str(actual.get(name)).lower() != expected:
            raise LockdownError(f"could not lock the store's connection down ({name} = {actual.get(name)})")


READER = SharedReader()
atexit.register(READER.release)  # a connection still open at exit makes DuckDB's bindings complain
