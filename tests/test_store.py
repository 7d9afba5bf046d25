"""The store's promises: a run is whole or absent, replaced in place, and locks are waited out."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pipeline import store
from tests.conftest import REPO_ROOT


def record(run_id: str, n: int, version: str) -> store.RunRecord:
    ids = [f"img{i}" for i in range(n)]
    probs = np.full((n, 2), 0.5, np.float32)
    return store.RunRecord(
        run={"run_id": run_id, "name": version, "status": "complete", "config_hash": version},
        labels={"period": ["A", "B"]},
        epochs=pd.DataFrame({"run_id": [run_id], "stage": ["head"], "epoch": [1], "val_acc": [0.5]}),
        predictions=pa.table({"run_id": [run_id] * n, "image_id": ids, "task": ["period"] * n,
                              "pred_label": ["A"] * n, "probs": store.float_lists(probs)}),
        metrics=pd.DataFrame({"run_id": [run_id], "split": ["test"], "task": ["period"], "metric": ["accuracy"],
                              "label": [None], "value": [0.5]}),
        confusion=pd.DataFrame({"run_id": [run_id], "split": ["test"], "task": ["period"], "true_label": ["A"],
                                "pred_label": ["A"], "count": [n]}),
        embeddings=pa.table({"run_id": [run_id] * n, "image_id": ids, "vector": store.float_lists(probs),
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
        sys.path.insert(0, {str(REPO_ROOT)!r})
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


def test_connect_waits_for_another_process_lock(tmp_path):
    path = tmp_path / "s.duckdb"
    store.write_run(path, record("e/r", 3, "v1"))
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('HELD', flush=True); "
                               "time.sleep(2); c.close()"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "HELD"
        with pytest.raises(duckdb.Error):  # DuckDB itself refuses while the other process holds the file
            duckdb.connect(str(path), read_only=True)
        started = time.monotonic()
        with store.connect(path, read_only=True, wait_seconds=30) as con:
            assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
        assert time.monotonic() - started > 0.2  # it really waited for the lock
    finally:
        holder.kill()
        holder.wait()


def test_lock_wait_gives_up_with_a_clear_error(tmp_path):
    path = tmp_path / "s.duckdb"
    store.write_run(path, record("e/r", 3, "v1"))
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('HELD', flush=True); "
                               "time.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "HELD"
        with pytest.raises(store.StoreLockedError, match="locked by another process"), store.connect(
            path, wait_seconds=0.5
        ):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_a_fresh_connection_can_register_data_at_once(tmp_path):
    path = tmp_path / "s.duckdb"
    store.write_run(path, record("e/r", 3, "v1"))
    with store.connect(path) as con:  # schema check ran; nothing of it may be left pending
        con.register("t", pd.DataFrame({"a": [1]}))
        assert con.execute("SELECT a FROM t").fetchall() == [(1,)]
