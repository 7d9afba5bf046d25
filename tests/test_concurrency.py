"""The dashboard open while the pipeline writes: no page fails, the pipeline is not held up,
and the new run appears after a refresh."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import yaml
from streamlit.testing.v1 import AppTest

from tests.conftest import REPO_ROOT, TINY_EXPERIMENT


def test_dashboard_reads_while_the_pipeline_writes(demo_store, tmp_path, monkeypatch):
    store = tmp_path / "store.duckdb"
    shutil.copy(demo_store, store)
    spec = {**TINY_EXPERIMENT, "runs": [{"name": "extra", "strategy": "head", "epochs": 3}],
            "attributions": {"ig_steps": 4, "max_images": 12, "sanity_images": 2, "heatmap_size": 32}}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(spec))
    pipeline = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", str(tmp_path / "exp.yaml"), "--store", str(store), "--quiet"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    monkeypatch.setenv("PERIODEYE_STORE", str(store))
    renders = 0
    try:
        while pipeline.poll() is None or renders < 2:
            for page in ("views/overview.py", "views/errors.py"):
                at = AppTest.from_file(str(REPO_ROOT / "dashboard" / "Home.py"), default_timeout=120)
                at.switch_page(page)
                at.run()
                assert not at.exception, at.exception
                renders += 1
    finally:
        out, _ = pipeline.communicate(timeout=600)
    assert pipeline.returncode == 0, out
    waits = [float(w) for w in re.findall(r"waited ([\d.]+)s for the lock", out)]
    assert all(w < 5 for w in waits), out  # the dashboard never held the pipeline up for long
    at = AppTest.from_file(str(REPO_ROOT / "dashboard" / "Home.py"), default_timeout=120)
    at.run()
    assert "tiny/extra" in set(at.dataframe[0].value["run_id"])
    assert renders >= 2
