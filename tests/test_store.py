"""The store's promises: a run is whole or absent, replaced in place, and locks are waited out."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from contextlib import contextmanager

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pipeline import store
from pipeline.arrays import float_lists
from tests.conftest import REPO_ROOT


def record(run_id: str, n: int, version: str) -> store.RunRecord:
    ids = [f"img{i}" for i in range(n)]
    probs = np.full((n, 2), 0.5, np.float32)
    return store.RunRecord(
        run={"run_id": run_id, "name": version, "status": "complete", "config_hash": version},
        labels={"period": ["A", "B"]},
        epochs=pd.DataFrame({"run_id": [run_id], "stage": ["head"], "epoch": [1], "val_acc": [0.5]}),
        predictions=pa.table({"run_id": [run_id] * n, "image_id": ids, "task": ["period"] * n,
                              "pred_label": ["A"] * n, "probs": float_lists(probs)}),
        metrics=pd.DataFrame({"run_id": [run_id], "split": ["test"], "task": ["period"], "metric": ["accuracy"],
                              "label": [None], "value": [0.5]}),
        confusion=pd.DataFrame({"run_id": [run_id], "split": ["test"], "task": ["period"], "true_label": ["A"],
                                "pred_label": ["A"], "count": [n]}),
        embeddings=pa.table({"run_id": [run_id] * n, "image_id": ids, "vector": float_lists(probs),
                             "x": np.zeros(n, np.float32), "y": np.zeros(n, np.float32)}),
    )


def counts(path, run_id):
    with duckdb.connect(str(path), read_only=True) as con:
        return {t: con.execute(f"SELECT count(*) FROM {t} WHERE run_id = ?", [run_id]).fetchone()[0]
                for t in ("runs", "predictions", "embeddings", "metrics", "confusion", "epochs", "run_labels")}


def test_rewrite_replaces_a_run(tmp_path):
    path = tmp_path / "s.duckdb"
    store.write_run(path, record("e/r", 10, "v1"))
    store.write_run(path, record("e/r", 4, "v2"))
    assert counts(path, "e/r") == {"runs": 1, "predictions": 4, "embeddings": 4, "metrics": 1, "confusion": 1,
                                   "epochs": 1, "run_labels": 2}
    assert store.completed_runs(path) == {"e/r": "v2"}


def test_a_run_killed_mid_write_leaves_the_previous_version_whole(tmp_path):
    path = tmp_path / "s.duckdb"
    store.write_run(path, record("e/r", 10, "v1"))
    script = textwrap.dedent(f"""
        import sys, time
        from pipeline import store
        from tests.test_store import record
        real_insert, calls = store._insert, []
        def insert_then_stall(con, table, data):
            real_insert(con, table, data)
            calls.append(table)
            if table == "predictions":  # deleted old rows, wrote some new ones: now die
                print("MID-WRITE", flush=True)
                time.sleep(120)
        store._insert = insert_then_stall
        store.write_run({str(path)!r}, record("e/r", 99, "v2"))
        store.write_run({str(path)!r}, record("e/new", 5, "v1"))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    try:
        assert proc.stdout.readline().strip() == "MID-WRITE"
    finally:
        proc.kill()
        proc.wait()
    assert counts(path, "e/r") == {"runs": 1, "predictions": 10, "embeddings": 10, "metrics": 1, "confusion": 1,
                                   "epochs": 1, "run_labels": 2}
    assert counts(path, "e/new")["runs"] == 0
    assert store.completed_runs(path) == {"e/r": "v1"}


class RefusalSpy:
    """`duckdb` as pipeline.store sees it, calling `on_refusal` the first time an open is refused."""

    def __init__(self, on_refusal):
        self.on_refusal, self.refusals = on_refusal, 0

    def __getattr__(self, name):
        return getattr(duckdb, name)

    def connect(self, *args, **kwargs):
        try:
            return duckdb.connect(*args, **kwargs)
        except duckdb.Error:
            self.refusals += 1
            if self.refusals == 1:
                self.on_refusal()
            raise


def test_connect_waits_for_another_process_lock(tmp_path, monkeypatch):
    """Ordered by events, not by the clock: the holder lets go only after the store's open was refused once."""
    path = tmp_path / "s.duckdb"
    store.write_run(path, record("e/r", 3, "v1"))
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys; c = duckdb.connect({str(path)!r}); print('HELD', flush=True); "
                               "sys.stdin.readline(); c.close(); print('RELEASED', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )

    def release():
        holder.stdin.write("release\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "RELEASED"

    try:
        assert holder.stdout.readline().strip() == "HELD"
        with pytest.raises(duckdb.Error):  # DuckDB itself refuses while the other process holds the file
            duckdb.connect(str(path), read_only=True)
        spy = RefusalSpy(release)
        monkeypatch.setattr(store, "duckdb", spy)
        with store.connect(path, read_only=True, wait_seconds=60) as con:
            assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
        assert spy.refusals >= 1  # it was refused while the lock was held, then waited until it was released
        assert holder.poll() is None  # and the holder let go of the file without ending
    finally:
        holder.kill()
        holder.wait()


@contextmanager
def held_by_another_process(path, read_only: bool):
    """Another process has the store open (DuckDB's lock) for as long as the block runs."""
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(path)!r}, read_only={read_only}); "
                               "print('HELD', flush=True); time.sleep(300)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "HELD"
        yield
    finally:
        holder.kill()
        holder.wait()


def test_lock_wait_gives_up_with_a_clear_error(tmp_path):
    path = tmp_path / "s.duckdb"
    store.write_run(path, record("e/r", 3, "v1"))
    with held_by_another_process(path, read_only=False), pytest.raises(
            store.StoreLockedError, match="locked by another process"), store.connect(path, wait_seconds=0.5):
        pass


def test_a_fresh_connection_can_register_data_at_once(tmp_path):
    path = tmp_path / "s.duckdb"
    store.write_run(path, record("e/r", 3, "v1"))
    with store.connect(path) as con:  # schema check ran; nothing of it may be left pending
        con.register("t", pd.DataFrame({"a": [1]}))
        assert con.execute("SELECT a FROM t").fetchall() == [(1,)]


# ---------------------------------------------------------------- what a path given as the store holds


def other_app(path):
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE customers (id INTEGER, name TEXT); INSERT INTO customers VALUES (1, 'Ada')")
    return path


def schema_version(path) -> str:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]


def test_list_opens_read_only_beside_another_reader(tmp_path, capsys):
    """A read-write open fails while another process reads the file (DuckDB's lock): `list` must not need one."""
    path = tmp_path / "s.duckdb"
    store.write_run(path, record("e/r", 3, "v1"))
    from pipeline.__main__ import main

    with held_by_another_process(path, read_only=True):
        assert main(["list", "--store", str(path)]) == 0
    assert "e/r" in capsys.readouterr().out


def test_writers_refuse_another_apps_file_unless_adopting_it(tmp_path, capsys):
    from pipeline.__main__ import main

    path = other_app(tmp_path / "other.duckdb")
    before = path.read_bytes()
    with pytest.raises(store.StoreError, match="not a Period Eye store .*customers.*--adopt-store"):
        store.check_store(path, writing=True)
    assert main(["upgrade", "--store", str(path)]) == 2
    assert "--adopt-store" in capsys.readouterr().err
    assert path.read_bytes() == before
    assert main(["upgrade", "--store", str(path), "--adopt-store"]) == 0
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT * FROM customers").fetchall() == [(1, "Ada")]  # its own data kept
    assert schema_version(path) == store.SCHEMA_VERSION
    store.check_store(path)  # a Period Eye store now


def test_a_newer_store_is_never_downgraded(tmp_path):
    path = tmp_path / "s.duckdb"
    store.write_run(path, record("e/r", 3, "v1"))
    with duckdb.connect(str(path)) as con:
        con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    for writing in (False, True):
        with pytest.raises(store.StoreError, match="newer Period Eye .*schema 99"):
            store.check_store(path, writing=writing)
    store.check_store(path, writing=True, adopt=True)
    store.write_run(path, record("e/r2", 3, "v1"))  # asked to write anyway: it writes, and leaves the version
    assert schema_version(path) == "99"


def test_an_older_store_is_upgraded_in_place(tmp_path, capsys):
    from pipeline.__main__ import main

    path = tmp_path / "s.duckdb"
    store.write_run(path, record("e/r", 3, "v1"))
    with duckdb.connect(str(path)) as con:
        con.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'; ALTER TABLE runs DROP evaluation_of")
    with pytest.raises(store.StoreError, match="older Period Eye .*python -m pipeline upgrade"):
        store.check_store(path)
    store.check_store(path, writing=True)  # a writer upgrades it
    assert main(["upgrade", "--store", str(path)]) == 0
    assert schema_version(path) == store.SCHEMA_VERSION
    assert store.completed_runs(path) == {"e/r": "v1"}


def test_a_writer_starts_a_new_store_in_an_empty_file(tmp_path):
    path = tmp_path / "s.duckdb"
    path.touch()
    with pytest.raises(store.StoreError, match="empty file"):
        store.check_store(path)
    store.check_store(path, writing=True)
    store.write_run(path, record("e/r", 3, "v1"))
    assert store.completed_runs(path) == {"e/r": "v1"}


def test_a_sqlite_file_never_reaches_duckdb(tmp_path, monkeypatch):
    """DuckDB would load the sqlite extension for it, and download it first: from the network."""
    import sqlite3

    path = tmp_path / "s.duckdb"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE runs (run_id TEXT)")

    def no_duckdb(*args, **kwargs):
        raise AssertionError("DuckDB was asked to open a SQLite file")

    monkeypatch.setattr(store.duckdb, "connect", no_duckdb)
    for read_only in (True, False):
        with pytest.raises(store.StoreError, match="SQLite database"):
            store.open_connection(path, read_only=read_only)


def test_connections_never_load_or_install_extensions(tmp_path):
    path = tmp_path / "s.duckdb"
    store.write_run(path, record("e/r", 3, "v1"))
    with store.connect(path, read_only=True) as con:
        settings = dict(con.execute("SELECT name, value FROM duckdb_settings() WHERE name LIKE 'auto%_known_extensions'"
                                    ).fetchall())
    assert settings == {"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"}
