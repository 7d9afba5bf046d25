"""One read-only connection to the store, shared by every session of this dashboard process.

Opening the file costs 15–30 ms and starts with an empty buffer pool, so at 400k predictions
a page whose queries each opened the store spent most of its time re-reading the same column
blocks (BENCHMARKS.md). The shared connection keeps them warm; every query gets its own cursor.

DuckDB's file lock is exclusive across processes, and within one process a read-write open
fails while a read-only instance is alive. So the reader lets go of the file whenever someone
wants to write: another process (it raises `pipeline.store.writer_flag` while it waits), this
process (`READER.paused()`, e.g. an annotation save), after IDLE_SECONDS without a query, and
when the store file was replaced. It is a small state machine, kept under one condition lock:

- the *current* connection hands out cursors; `_users` counts them;
- it is *retired* (no new cursors) when a writer waits, the store changed, or a query saw the
  connection fail; while a retired connection still has users, new queries wait for it;
- a connection is closed only when its last cursor ends (or by the watcher when idle), never
  with cursors in flight, and every count is restored in `finally`;
- once closed (or found dead), the next query opens a fresh one.

The instance is locked down as the SQL console needs it (no file or network access, settings
locked): DuckDB shares one instance per file and process, and the console's connection is one
of its cursors.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import duckdb

from pipeline import store as pipeline_store

IDLE_SECONDS = 30.0
MEMORY_LIMIT = "2GB"
WATCH_SECONDS = 0.1
FLAG_FRESH_SECONDS = 5.0  # a waiting writer touches its flag at least every second; an older flag was left by a kill
T = TypeVar("T")


def file_version(path: str | Path) -> float:
    """Changes whenever a writer commits (the file or its WAL): keys the connection and every cached result."""
    path = Path(path)
    wal = path.with_name(path.name + ".wal")
    stamps = []
    for p in (path, wal):
        with contextlib.suppress(OSError):
            stamps.append(p.stat().st_mtime_ns)
    return max(stamps) if stamps else 0.0


def writer_waiting(path: str | Path) -> bool:
    """Another process waits for the store (its flag is fresh: a killed writer's stale flag is ignored)."""
    try:
        return time.time() - pipeline_store.writer_flag(path).stat().st_mtime < FLAG_FRESH_SECONDS
    except OSError:
        return False


class StoreBusyError(pipeline_store.StoreLockedError):
    """A writer kept the store for longer than a page is willing to wait."""


# DuckDB raises these when the connection under a cursor is gone (closed, or its instance invalidated).
CONNECTION_ERRORS = (duckdb.ConnectionException, duckdb.FatalException, duckdb.ResourceInUseException)


def _dead(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether a query failed because its connection is gone (closed under it), not because of the query."""
    try:
        con.cursor().close()
        return False
    except duckdb.Error:
        return True


class SharedReader:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._path: str | None = None
        self._version = 0.0
        self._users = 0
        self._retired = False
        self._opening = False
        self._writers = 0  # this process's writers waiting for, or holding, the file
        self._last_used = 0.0
        self._watcher: threading.Thread | None = None
        self.stats = {"opened": 0, "closed": 0, "dead": 0, "retried": 0}

    # ------------------------------------------------------------ the public face

    @contextmanager
    def cursor(self, path: str | Path, version: float | None = None, wait_seconds: float = 15.0
               ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor on the shared connection; waits (bounded) while a writer has the file.

        `version` is the store's file_version as the caller saw it: a newer one than the connection's
        means the file was replaced, so the connection retires once its cursors end."""
        con = self._acquire(str(path), version, time.monotonic() + wait_seconds)
        failed = False
        try:
            cur = con.cursor()
            try:
                yield cur
            finally:
                with contextlib.suppress(duckdb.Error):
                    cur.close()
        except duckdb.Error as exc:
            failed = isinstance(exc, CONNECTION_ERRORS) or _dead(con)
            if failed and not isinstance(exc, CONNECTION_ERRORS):
                raise duckdb.ConnectionException(f"the store's connection died under the query: {exc}") from exc
            raise
        finally:
            self._release(con, failed)

    def run(self, path: str | Path, work: Callable[[duckdb.DuckDBPyConnection], T], version: float | None = None,
            wait_seconds: float = 15.0) -> T:
        """work(cursor), retried once on a fresh connection when the shared one turns out to be dead."""
        try:
            with self.cursor(path, version, wait_seconds) as cur:
                return work(cur)
        except CONNECTION_ERRORS:
            self.stats["retried"] += 1
            with self.cursor(path, version, wait_seconds) as cur:
                return work(cur)

    @contextmanager
    def paused(self, wait_seconds: float = 15.0) -> Iterator[None]:
        """Hold every query of this process off the file while the body writes it: new queries wait, the
        ones in flight finish, the connection closes; afterwards queries reopen it."""
        deadline = time.monotonic() + wait_seconds
        with self._cond:
            self._writers += 1
            self._retired = True
            try:
                self._close_if_unused()
                while self._con is not None or self._opening:
                    if not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                        raise StoreBusyError("the dashboard's own queries kept the store for too long")
                    self._close_if_unused()
            except BaseException:
                self._writers -= 1
                self._cond.notify_all()
                raise
        try:
            yield
        finally:
            with self._cond:
                self._writers -= 1
                self._cond.notify_all()

    def release(self) -> None:
        """Close the shared connection now if no query is using it (tests, and exit)."""
        with self._cond:
            self._retired = True
            self._close_if_unused()

    # ------------------------------------------------------------ the state machine

    def _acquire(self, path: str, version: float | None, deadline: float) -> duckdb.DuckDBPyConnection:
        with self._cond:
            while True:
                if self._con is not None and (self._path != path or (version is not None and version > self._version)):
                    self._retired = True  # another store, or this one replaced: no new cursors on it
                    self._close_if_unused()
                blocked = self._writers > 0 or writer_waiting(path) or self._opening
                if self._con is not None and not self._retired and not blocked:
                    self._users += 1
                    return self._con
                if self._con is None and not blocked:
                    self._opening = True
                    break
                if self._con is not None and not blocked:
                    self._close_if_unused()  # retired and unused (a dead one): close, then open anew
                    if self._con is None:
                        continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StoreBusyError(f"{path} is busy: a writer has held it for longer than a page waits")
                self._cond.wait(timeout=min(remaining, WATCH_SECONDS))
        con = None
        try:
            wait = max(0.0, deadline - time.monotonic())
            con = pipeline_store.open_connection(path, read_only=True, wait_seconds=wait)
            lock_down(con)
        except BaseException:
            if con is not None:
                with contextlib.suppress(duckdb.Error):
                    con.close()
            with self._cond:
                self._opening = False
                self._cond.notify_all()
            raise
        with self._cond:
            self._opening = False
            self._con, self._path, self._version, self._retired = con, path, file_version(path), False
            self._users = 1
            self.stats["opened"] += 1
            self._last_used = time.monotonic()
            self._start_watcher()
            self._cond.notify_all()
            return con

    def _release(self, con: duckdb.DuckDBPyConnection, failed: bool) -> None:
        with self._cond:
            if con is self._con:
                self._users -= 1
                self._last_used = time.monotonic()
                if failed:
                    self.stats["dead"] += 1
                    self._retired = True
                if self._retired or self._writers or self._writer_waiting():
                    self._close_if_unused()
            self._cond.notify_all()

    def _writer_waiting(self) -> bool:
        """A writer waits for the store this reader has open (none open: nobody waits for it)."""
        return self._path is not None and writer_waiting(self._path)

    def _close_if_unused(self) -> None:
        """Close the connection when no cursor is in flight (call with the lock held); a failing close still
        forgets the connection, so the next query opens a fresh one."""
        if self._con is None or self._users > 0:
            return
        con, self._con, self._path, self._retired = self._con, None, None, False
        self.stats["closed"] += 1
        with contextlib.suppress(duckdb.Error):
            con.close()
        self._cond.notify_all()

    def _start_watcher(self) -> None:
        if self._watcher is None or not self._watcher.is_alive():
            self._watcher = threading.Thread(target=self._watch, name="periodeye-store-reader", daemon=True)
            self._watcher.start()

    def _watch(self) -> None:
        """Let go of an unused connection when a writer waits or after IDLE_SECONDS."""
        while True:
            time.sleep(WATCH_SECONDS)
            with self._cond:
                if self._con is None and not self._opening:
                    self._watcher = None
                    return
                if self._con is not None and self._users == 0 and (
                        time.monotonic() - self._last_used > IDLE_SECONDS or self._writer_waiting()):
                    self._close_if_unused()


# (setting, value to SET, value duckdb_settings() then reports, must hold for the console to run), in order:
# every SET must come before the lock, which forbids later changes (its own undoing too).
LOCKDOWN = (
    ("temp_directory", "''", "", False),  # no spilling: a query that needs more than memory_limit fails instead
    ("memory_limit", f"'{MEMORY_LIMIT}'", None, False),
    ("enable_external_access", "false", "false", True),  # no files (read_csv, COPY, ATTACH, glob), no network
    # ... except the open store's own files, which DuckDB keeps in allowed_paths (read_blob('<store>') read it, deleted
    # rows and all). So the local file system goes too, after the line above (which itself needs it); the store's open
    # handle still reads. duckdb_settings() reports '' for it whatever it holds, so the console checks it by trying.
    ("disabled_filesystems", "'LocalFileSystem'", None, False),
    ("python_enable_replacements", "false", "false", True),  # FROM some_name never scans a Python object
    ("autoinstall_known_extensions", "false", "false", True),
    ("autoload_known_extensions", "false", "false", True),
    ("lock_configuration", "true", "true", True),  # last: SET/RESET of anything now fails
)


class LockdownError(RuntimeError):
    """DuckDB did not report a required setting after the lockdown: nothing may run on this connection."""


# Settings DuckDB keeps per connection: a cursor (or a second connection to a locked instance) starts from the
# default. Only the SQL console's worker, whose one connection runs the user's SQL, can and does require them.
PER_CONNECTION = {"python_enable_replacements"}


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
        if required and name not in PER_CONNECTION and str(actual.get(name)).lower() != expected:
            raise LockdownError(f"could not lock the store's connection down ({name} = {actual.get(name)})")


READER = SharedReader()
atexit.register(READER.release)  # a connection still open at exit makes DuckDB's bindings complain
