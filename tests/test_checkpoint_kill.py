"""A killed `run --force` never damages the stored run's checkpoint, and resume repairs or redoes what is off.

The kill is real: a subprocess runs the experiment (the CLI's `run --force`: load_experiment, run_experiment with
force, the artifacts folder moved into the test's folder, as tests/test_distributed.py does) and the test
watches the files that process holds open (/proc/PID/fd). The moment it opens a model file in the run's folder
for writing, it gets SIGKILL: that is the instant a checkpoint is half written, with no hook in the code.
The states a kill can leave around the store transaction (checkpoint gone, truncated, or a finished re-run
whose checkpoint was not yet moved into place) are then made directly and resumed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import checkpoint, store
from pipeline.config import ConfigError
from pipeline.experiment import run_experiment
from pipeline.explain import explain_image, load_run
from tests.conftest import REPO_ROOT, make_experiment, sql
from tests.test_dataset_versions import folder, spec

pytestmark = pytest.mark.slow  # every test trains a run and kills or damages it

RUN_ID = "versions/head"

DRIVER = '''
import sys
from pathlib import Path

from pipeline.config import load_experiment
from pipeline.experiment import run_experiment

folder = Path(sys.argv[1])
exp = load_experiment(folder / "experiment.yaml", store=str(folder / "store.duckdb"))
exp.artifacts_dir = str(folder / "artifacts")
run_experiment(exp, force=True, progress=False)
'''


@pytest.fixture()
def stored(tmp_path: Path):
    """One finished run (a frozen-backbone head on 30 small generated images) in a store of its own."""
    exp = make_experiment(tmp_path, spec(folder(tmp_path / "paintings", per_class=10)))
    run_experiment(exp, progress=False)
    return exp


def run_dir(exp) -> Path:
    return Path(exp.artifacts_dir) / "runs" / RUN_ID.replace("/", "__")


def stored_row(exp) -> tuple:
    return sql(Path(exp.store), "SELECT config_hash, finished_at, checkpoint, test_accuracy FROM runs")[0]


def stored_checkpoint(exp) -> Path:
    """The run's checkpoint file as the store names it (relative to the store's folder)."""
    return checkpoint.resolve(exp.store, stored_row(exp)[2])


def an_image(exp) -> Path:
    """A test image of the run, to explain."""
    (path,), = sql(Path(exp.store), "SELECT path FROM images WHERE split = 'test' ORDER BY image_id LIMIT 1")
    return Path(path)


def writing_model(pid: int, where: Path) -> str | None:
    """The model file in `where` that process `pid` holds open, if any."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return None
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(where)) and Path(target).name.startswith("model"):
            return target
    return None


def kill_while_writing_checkpoint(exp, timeout: float = 300) -> str:
    """Start `run --force` in a subprocess and SIGKILL it as soon as it opens a model file; the file's name."""
    home = Path(exp.store).parent  # make_experiment wrote experiment.yaml there
    (home / "driver.py").write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, str(home / "driver.py"), str(home)], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            target = writing_model(proc.pid, run_dir(exp))
            if target:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return target
        pytest.fail(f"the re-run {'ended' if proc.poll() is not None else 'ran on'} without writing a model file")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_kill_while_the_checkpoint_is_written_leaves_the_stored_run_whole(stored) -> None:
    exp = stored
    row = stored_row(exp)
    image = an_image(exp)
    expected = explain_image(load_run(exp.store, RUN_ID), image).probabilities

    written = kill_while_writing_checkpoint(exp)

    got = explain_image(load_run(exp.store, RUN_ID), image).probabilities  # explain works, with the same model
    assert got == pytest.approx(expected)
    assert stored_row(exp) == row  # the store still holds the old run
    assert Path(row[2]).name == "model.pt" and Path(written) != stored_checkpoint(exp)  # never written in place
    run_experiment(exp, progress=False)  # resume: the run is complete and its checkpoint sound
    assert stored_row(exp) == row
    # the half-written file is litter beside it, never loaded; the run's next write clears it
    assert sorted(p.name for p in run_dir(exp).iterdir()) == sorted(["config.yaml", "model.pt", Path(written).name])


@pytest.mark.parametrize("damage", ["truncated", "missing", "not a checkpoint"])
def test_resume_redoes_a_run_whose_checkpoint_is_damaged(stored, damage: str, capsys) -> None:
    exp = stored
    path = stored_checkpoint(exp)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "missing":
        path.unlink()
    else:
        path.write_bytes(b"\x00" * 100)
    with pytest.raises(ConfigError, match=f"checkpoint of {RUN_ID}"):
        load_run(exp.store, RUN_ID)
    capsys.readouterr()

    done = run_experiment(exp, progress=False)

    out = capsys.readouterr().out
    assert [s["run_id"] for s in done] == [RUN_ID]
    assert f"[redo] {RUN_ID}" in out and "[skip]" not in out
    loaded = load_run(exp.store, RUN_ID)
    explain_image(loaded, an_image(exp))
    assert checkpoint.problem(path, stored_checkpoint_token(exp)) is None


def stored_checkpoint_token(exp) -> str:
    (token,), = sql(Path(exp.store), "SELECT summary->>'$.checkpoint_token' FROM runs WHERE run_id = ?", [RUN_ID])
    return token


def test_a_rerun_stored_but_killed_before_its_checkpoint_moved_in_is_repaired(stored, monkeypatch, capsys) -> None:
    """The run is committed, then the process dies before renaming its new checkpoint over model.pt: the store
    names the new file by its token, so explain loads the new one, and resume moves it into place."""
    exp = stored
    old = torch.load(stored_checkpoint(exp), map_location="cpu", weights_only=True)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed between the store commit and the rename")

    monkeypatch.setattr(checkpoint, "install", killed)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(exp, force=True, progress=False)
    monkeypatch.undo()
    token = stored_checkpoint_token(exp)
    path = stored_checkpoint(exp)
    assert torch.load(path, map_location="cpu", weights_only=True)["token"] == old["token"] != token
    assert load_run(exp.store, RUN_ID)  # the committed (pending) file is the one loaded
    capsys.readouterr()

    assert run_experiment(exp, progress=False) == []  # repaired, not retrained

    assert f"[repair] {RUN_ID}" in capsys.readouterr().out
    assert checkpoint.problem(path, token) is None
    assert sorted(p.name for p in run_dir(exp).iterdir()) == ["config.yaml", "model.pt"]
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["token"] == token and not np.isnan(float(next(iter(ckpt["state_dict"].values())).float().sum()))
    assert store.completed_runs(exp.store)
