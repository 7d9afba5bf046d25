"""The dashboard's shared reader under fire: many sessions query while another process writes runs and
annotations, this process saves annotations, and the connection is killed under the readers' feet.
Every query must succeed (bounded in time and count: this is a proof, not a benchmark)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.queries import verdicts
from dashboard.queries.reader import READER, file_version
from tests.conftest import REPO_ROOT, copy_store, sql

pytestmark = pytest.mark.slow  # the demo store (a session fixture that trains 5 runs) and a writer process

WRITES = 6  # the writer process: this many run copies, each followed by an annotation
QUERIES = (
    "SELECT run_id, test_accuracy FROM runs ORDER BY run_id",
    "SELECT p.image_id, p.pred_label, i.title FROM predictions p JOIN runs r USING (run_id) "
    "JOIN images i ON i.dataset_id = r.dataset_id AND i.image_id = p.image_id WHERE NOT p.correct LIMIT 50",
    "SELECT true_label, pred_label, sum(count) FROM confusion GROUP BY ALL",
    "SELECT count(*) FROM annotations",
)

# Another process writes as the pipeline does: a whole run in one transaction through pipeline.store.connect
# (which raises the writer flag while it waits), then an annotation through the dashboard's own save.
WRITER = """
import sys, time
from pipeline import store
from dashboard.queries import verdicts
path, n = sys.argv[1], int(sys.argv[2])
with store.connect(path, read_only=True) as con:
    dataset_id, image_id = con.execute("SELECT dataset_id, image_id FROM images LIMIT 1").fetchone()
tables = [t for t in store.RUN_TABLES if t != "runs"]
for k in range(n):
    with store.connect(path, wait_seconds=60) as con:
        con.execute("BEGIN")
        con.execute("INSERT INTO runs SELECT * REPLACE (run_id || '-copy' || ? AS run_id) FROM runs "
                    "WHERE run_id = 'tiny/head'", [k])
        for table in tables:
            con.execute(f"INSERT INTO {table} SELECT * REPLACE (run_id || '-copy' || ? AS run_id) FROM {table} "
                        "WHERE run_id = 'tiny/head'", [k])
        con.execute("COMMIT")
    verdicts.save_annotation(dataset_id, image_id, "tiny/head", "ambiguous", f"writer {k}", "Writer", path=path)
    time.sleep(0.3)
print("done")
"""


@pytest.fixture
def store(demo_store, tmp_path) -> Path:
    path = copy_store(demo_store, tmp_path)
    READER.release()
    yield path
    READER.release()


def _query_loop(path: Path, stop: threading.Event, counts: dict, failures: list) -> None:
    i = 0
    while not stop.is_set():
        sql_text = QUERIES[i % len(QUERIES)]
        i += 1
        try:
            READER.run(path, lambda cur, s=sql_text: cur.execute(s).fetchall(), file_version(path), wait_seconds=60)
            counts["queries"] += 1
        except Exception as exc:  # noqa: BLE001  (every failure is the finding)
            failures.append(f"query: {type(exc).__name__}: {exc}")


def _kill_the_connection(stop: threading.Event, counts: dict) -> None:
    """The injected failure: close the shared connection under the readers' feet, as a crashing bug would."""
    while not stop.is_set():
        time.sleep(0.7)
        con = READER._con  # noqa: SLF001  (the fault injection needs the real object)
        if con is not None:
            try:
                con.close()
                counts["killed"] += 1
            except Exception:  # noqa: BLE001  (DuckDB refuses while a call on it is in flight: try again)
                pass


def test_no_query_fails_while_another_process_writes(store, monkeypatch):
    monkeypatch.setenv("PERIODEYE_STORE", str(store))
    dataset_id, image_id = sql(store, "SELECT dataset_id, image_id FROM images LIMIT 1")[0]
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(store), str(WRITES)], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stop = threading.Event()
    counts = {"queries": 0, "pages": 0, "saves": 0, "killed": 0}
    failures: list[str] = []
    threads = [threading.Thread(target=_query_loop, args=(store, stop, counts, failures)) for _ in range(4)]
    threads.append(threading.Thread(target=_kill_the_connection, args=(stop, counts)))
    for t in threads:
        t.start()
    save_seconds = []
    try:
        while writer.poll() is None or counts["pages"] < 4:
            for page in ("views/overview.py", "views/errors.py"):
                at = AppTest.from_file(str(REPO_ROOT / "dashboard" / "Home.py"), default_timeout=120)
                at.switch_page(page)
                at.run()
                if at.exception:
                    failures.append(f"page {page}: {at.exception[0].message}")
                counts["pages"] += 1
            started = time.monotonic()  # a save in this process, while 4 sessions query without pause
            try:
                verdicts.save_annotation(dataset_id, image_id, "tiny/head", "model right", "", "Ada", path=store)
                counts["saves"] += 1
                save_seconds.append(time.monotonic() - started)
            except Exception as exc:  # noqa: BLE001
                failures.append(f"save: {type(exc).__name__}: {exc}")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
        out, _ = writer.communicate(timeout=300)
    assert writer.returncode == 0, out
    print(counts, READER.stats, f"saves took at most {max(save_seconds):.2f}s")
    assert failures == [], (len(failures), failures[:5])
    assert counts["queries"] > 50 and counts["pages"] >= 4 and counts["saves"] >= 2, counts
    assert counts["killed"] >= 1 and READER.stats["dead"] >= 1, (counts, READER.stats)  # the fault did happen
    assert max(save_seconds) < 10, save_seconds  # a save never starves behind its own process's readers
    copies = sql(store, "SELECT count(*) FROM runs WHERE run_id LIKE 'tiny/head-copy%'")[0][0]
    saved = sql(store, "SELECT count(*) FROM annotations")[0][0]
    assert (copies, saved) == (WRITES, WRITES + counts["saves"])
