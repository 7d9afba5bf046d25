"""The dashboard open while the pipeline writes: no page fails, the pipeline is not held up,
and the new run appears after a refresh."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest
import yaml
from streamlit.testing.v1 import AppTest

from tests.conftest import REPO_ROOT, TINY_EXPERIMENT

pytestmark = pytest.mark.slow  # the demo store (a session fixture that trains 5 runs), a pipeline run beside it

# `python -m pipeline …`, with every open of the store timed: the store itself reports only waits over 2 s, so
# without this an empty list of waits could not tell "never held up" from "never measured".
TIMED_PIPELINE = """
import sys, time
from pipeline import store
from pipeline.__main__ import main

opened = store.open_connection

def timed(path, read_only=False, wait_seconds=60.0):
    started = time.monotonic()
    con = opened(path, read_only, wait_seconds)
    print(f"[open] {'read' if read_only else 'write'} waited {time.monotonic() - started:.3f}s", flush=True)
    return con

store.open_connection = timed
sys.exit(main(sys.argv[1:]))
"""


def test_dashboard_reads_while_the_pipeline_writes(demo_store, tmp_path, monkeypatch):
    store = tmp_path / "store.duckdb"
    shutil.copy(demo_store, store)
    spec = {**TINY_EXPERIMENT, "runs": [{"name": "extra", "strategy": "head", "epochs": 3}],
            "attributions": {"ig_steps": 4, "max_images": 12, "sanity_images": 2, "heatmap_size": 32}}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(spec))
    pipeline = subprocess.Popen(
        [sys.executable, "-c", TIMED_PIPELINE, "run", str(tmp_path / "exp.yaml"), "--store", str(store), "--quiet"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    monkeypatch.setenv("PERIODEYE_STORE", str(store))
    renders = renders_while_writing = 0
    try:
        while pipeline.poll() is None or renders < 2:
            for page in ("views/overview.py", "views/errors.py"):
                at = AppTest.from_file(str(REPO_ROOT / "dashboard" / "Home.py"), default_timeout=120)
                at.switch_page(page)
                renders_while_writing += pipeline.poll() is None  # begun before the pipeline ended
                at.run()
                assert not at.exception, at.exception
                renders += 1
    finally:
        out, _ = pipeline.communicate(timeout=600)
    assert pipeline.returncode == 0, out
    writes = [float(w) for w in re.findall(r"\[open\] write waited ([\d.]+)s", out)]
    assert writes, out  # the run was stored through timed opens: the list of waits is complete, never empty
    assert all(w < 5 for w in writes), out  # the dashboard never held the pipeline up for long
    assert renders_while_writing >= 1, out  # and the dashboard was really reading while the pipeline ran
    at = AppTest.from_file(str(REPO_ROOT / "dashboard" / "Home.py"), default_timeout=120)
    at.run()
    assert "tiny/extra" in set(at.dataframe[0].value["run_id"])
    assert renders >= 2


def test_the_dashboards_open_connection_lets_a_waiting_writer_in(demo_store, tmp_path):
    """The shared reader keeps the store open between page views (IDLE_SECONDS); a writer in another process
    raises the writer flag and gets the file within its own short wait, and the reader reopens afterwards."""
    from dashboard.queries.reader import IDLE_SECONDS, READER, file_version

    store = tmp_path / "store.duckdb"
    shutil.copy(demo_store, store)
    with READER.cursor(store, file_version(store)) as con:
        before = con.execute("SELECT count(*) FROM runs").fetchone()[0]
    writer = (
        "import sys; from pipeline import store\n"
        "with store.connect(sys.argv[1], wait_seconds=float(sys.argv[2])) as con:\n"
        "    con.execute(\"INSERT INTO meta VALUES ('touched', 'yes')\")\n"
    )
    wait = IDLE_SECONDS / 3  # far shorter than the reader's idle timeout: only the flag can let it in
    done = subprocess.run([sys.executable, "-c", writer, str(store), str(wait)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "store.duckdb.writer-waiting").exists()
    with READER.cursor(store, file_version(store)) as con:
        assert con.execute("SELECT value FROM meta WHERE key = 'touched'").fetchone() == ("yes",)
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == before
    READER.release()
