"""Several training processes through Lightning's DDP strategy (two CPU processes, gloo).

The DDP run goes through a script, as a user's `python -m pipeline run exp.yaml` would:
Lightning's `ddp` launcher starts the second process by re-executing the command it was
started with, so it cannot start from inside pytest. The script is the CLI's `run` command
(load_experiment, run_experiment) with the artifacts folder moved into the test's tmp dir.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml

from pipeline.config import ConfigError, load_experiment
from pipeline.experiment import run_experiment
from tests.conftest import REPO_ROOT, TINY_EXPERIMENT, make_experiment, sql

RUN = {"name": "partial", "strategy": "partial", "freeze_until": 3, "epochs": 2, "patience": 5}
SPEC = {**TINY_EXPERIMENT, "attributions": {"enabled": False}, "runs": [RUN]}
RUN_ID = f"{SPEC['name']}/partial"

DRIVER = '''
import sys
from pathlib import Path

from pipeline.config import load_experiment
from pipeline.experiment import run_experiment

if __name__ == "__main__":  # Lightning's launcher re-executes this file for rank 1
    folder = Path(sys.argv[1])
    exp = load_experiment(folder / "experiment.yaml", store=str(folder / "store.duckdb"))
    exp.artifacts_dir = str(folder / "artifacts")
    run_experiment(exp, progress=False)
'''

# Set by a launcher; inherited values would make the test's processes join some other group.
LAUNCHER_ENV = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                "SLURM_PROCID", "SLURM_NTASKS", "PERIODEYE_RUN_QUEUE")


def run_script(folder, spec: dict, timeout: int = 300) -> str:
    (folder / "experiment.yaml").write_text(yaml.safe_dump(spec))
    (folder / "driver.py").write_text(DRIVER)
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen([sys.executable, str(folder / "driver.py"), str(folder)], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"distributed run still going after {timeout}s:\n{out[-5000:]}")
    assert proc.returncode == 0, out[-5000:]
    ended = time.monotonic() + 60  # rank 1 has ended too (it may take a moment to exit after rank 0)
    while group_alive(proc.pid):
        if time.monotonic() > ended:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"a process of the run was still going 60 s after rank 0 ended:\n{out[-5000:]}")
        time.sleep(0.1)
    return out


def group_alive(pgid: int) -> bool:
    """Whether any process is left in the run's process group."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def counts(store, text: str) -> dict:
    return {row[:-1]: row[-1] for row in sql(store, text)}


@pytest.mark.ddp
def test_ddp_run_on_two_cpu_processes_stores_what_a_single_process_run_stores(tmp_path):
    (tmp_path / "single").mkdir()
    single = make_experiment(tmp_path / "single", SPEC)
    run_experiment(single, progress=False)

    (tmp_path / "ddp").mkdir()
    out = run_script(tmp_path / "ddp", {**SPEC, "runs": [{**RUN, "devices": 2, "distributed": "ddp"}]})
    one, two = single.store, tmp_path / "ddp" / "store.duckdb"

    # Two processes in one gloo group, each training on its half of the data and seeing the same (reduced) val_acc.
    n = dict(sql(one, "SELECT split, count(*) FROM images GROUP BY split"))
    shards = re.findall(r"\[ddp\] rank (\d) of 2 \(gloo\): (\d+) train / (\d+) val images on this rank", out)
    assert sorted(rank for rank, _, _ in shards) == ["0", "1"], out[-5000:]
    for _, train_n, val_n in shards:
        assert int(train_n) == -(-n["train"] // 2) and int(val_n) == -(-n["val"] // 2)
    last = re.findall(r"\[ddp\] rank (\d) of 2: last val_acc=([0-9.]+)", out)
    assert sorted(rank for rank, _ in last) == ["0", "1"] and last[0][1] == last[1][1]

    # Rank 0 wrote once: one run, whole, no duplicate rows; the same tables and row counts as the single run.
    assert out.count("[data] ") == 1 and out.count(f"[run] {RUN_ID}:") == 1, out[-5000:]  # rank 1 stored nothing
    tables = "SELECT table_name FROM information_schema.tables ORDER BY 1"
    assert sql(two, tables) == sql(one, tables)
    for store in (one, two):
        assert sql(store, "SELECT run_id, status FROM runs") == [(RUN_ID, "complete")]
        for table in ("epochs", "predictions", "metrics", "confusion", "embeddings", "run_labels"):
            assert sql(store, f"SELECT DISTINCT run_id FROM {table}") == [(RUN_ID,)], table
    assert sql(two, "SELECT count(*) - count(DISTINCT (image_id, task)) FROM predictions") == [(0,)]
    for text in (
        "SELECT split, task, count(*) FROM predictions GROUP BY ALL",
        "SELECT split, task, sum(count) FROM confusion GROUP BY ALL",
        "SELECT split, task, count(*) FROM metrics GROUP BY ALL",
        "SELECT count(*), count(DISTINCT image_id), max(len(vector)) FROM embeddings",
        "SELECT stage, count(*), count(val_acc), count(train_loss) FROM epochs GROUP BY ALL",
        "SELECT task, count(*) FROM run_labels GROUP BY ALL",
    ):
        assert counts(two, text) == counts(one, text), text
    assert sql(two, "SELECT count(*) FROM epochs") == [(2,)]

    # The stored val_acc is over the whole val set (both ranks' shards): the best epoch's equals the accuracy of
    # the stored (best) weights on val, up to one prediction flipped by batch-size rounding.
    (best_epoch, notes), = sql(two, "SELECT best_epoch, summary->>'$.notes' FROM runs")
    epochs = dict(sql(two, "SELECT epoch, val_acc FROM epochs"))
    (val_acc,), = sql(two, "SELECT avg(correct::INT) FROM predictions WHERE split = 'val' AND task = 'period'")
    assert epochs[best_epoch] == max(epochs.values())
    assert epochs[best_epoch] == pytest.approx(val_acc, abs=1.5 / n["val"])
    assert float(last[0][1]) == pytest.approx(epochs[2], abs=1e-6)
    assert "trained on 2 processes (DDP, gloo)" in notes
    assert (tmp_path / "ddp" / "artifacts" / "runs" / RUN_ID.replace("/", "__") / "model.pt").exists()


def write(tmp_path, run: dict):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "data": {"source": "demo"}, "runs": [{"name": "a", **run}]}))
    return path


@pytest.mark.parametrize(
    ("run", "message"),
    [
        ({"devices": 0}, "devices must be 'auto' or a whole number >= 1"),
        ({"devices": "two"}, "devices must be"),
        ({"devices": True}, "devices must be"),
        ({"num_nodes": 0}, "num_nodes must be"),
        ({"distributed": "horovod"}, "distributed 'horovod' unknown"),
        ({"distributed": "ddp_spawn"}, "'ddp_spawn' is not supported"),
        ({"devices": 2, "distributed": "ddp", "lr_finder": True}, "lr_finder does not run with several processes"),
        ({"num_nodes": 2, "lr_finder": True}, "lr_finder"),
    ],
)
def test_bad_distributed_settings_are_explained(tmp_path, run, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment(write(tmp_path, run))


def test_distributed_settings_load(tmp_path):
    (run,) = load_experiment(write(tmp_path, {"devices": 4, "num_nodes": 2, "distributed": "ddp"})).runs
    assert (run.hardware.devices, run.hardware.num_nodes, run.hardware.distributed) == (4, 2, "ddp")
    (run,) = load_experiment(write(tmp_path, {})).runs
    assert (run.hardware.devices, run.hardware.num_nodes, run.hardware.distributed) == ("auto", 1, "auto")
