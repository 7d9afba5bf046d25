"""A dataset version is its content: a changed folder is a new version, and stored runs keep theirs.

The folder is a small generated ImageFolder (three periods of noisy colour fields). A run is stored, then 15
images are deleted and 10 added and the data prepared again (what `python -m pipeline prepare`, a partial run
or a killed `make artifacts` do): the stored run must still find every image it predicted, with the split it
was scored on, and report the metrics its predictions give.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest
from PIL import Image

from pipeline import store
from pipeline.__main__ import main
from pipeline.config import ConfigError
from pipeline.data.prepare import PreparedData, check_trainable, content_digest
from pipeline.experiment import config_hash, prepare_data, run_experiment
from tests.conftest import make_experiment, sql

PERIODS = ("Baroque", "Rococo", "Realism")
PER_CLASS = 30


def painting(path: Path, period: int, seed: int) -> None:
    """A 24x24 JPEG: the period's colour plus seeded noise, so every file has its own bytes."""
    rng = np.random.default_rng([period, seed])
    base = np.array([(200, 60, 40), (60, 180, 90), (50, 70, 200)][period], np.float32)
    pixels = np.clip(base + rng.normal(0, 40, (24, 24, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, "JPEG", quality=90)


def folder(root: Path, periods: tuple[str, ...] = PERIODS, per_class: int = PER_CLASS) -> Path:
    for p, name in enumerate(periods):
        for i in range(per_class):
            painting(root / name / f"{i:03d}.jpg", p, i)
    return root


def spec(root: Path) -> dict:
    return {
        "name": "versions",
        "data": {"source": "imagefolder", "path": str(root), "resize": 32, "crop": 32, "thumbnail_size": 32,
                 "split": {"mode": "fractions", "val": 0.2, "test": 0.2, "seed": 0}},
        "defaults": {"backbone": "efficientnet_lite0", "epochs": 1, "lr": 0.01, "batch_size": 64,
                     "projection": "pca"},
        "attributions": {"enabled": False},
        "runs": [{"name": "head", "strategy": "head"}],
    }


def change(root: Path, deleted: int = 15, added: int = 10) -> None:
    """Delete `deleted` images (spread over the periods) and add `added` new ones."""
    files = sorted(root.rglob("*.jpg"))
    for path in files[:: len(files) // deleted][:deleted]:
        path.unlink()
    for i in range(added):
        painting(root / PERIODS[i % len(PERIODS)] / f"new-{i:03d}.jpg", i % len(PERIODS), 1000 + i)


def run_state(path: str, run_id: str) -> dict:
    """What the dashboard shows of a run, joined as its pages join (predictions → runs → images)."""
    (dataset_id, accuracy), = sql(Path(path), "SELECT dataset_id, test_accuracy FROM runs WHERE run_id = ?",
                                  [run_id])
    (n, joined, split_mismatch, test, test_joined, test_acc), = sql(Path(path), """
        SELECT count(*), count(i.image_id), count(*) FILTER (WHERE i.split IS DISTINCT FROM p.split),
               count(*) FILTER (WHERE p.split = 'test'),
               count(i.image_id) FILTER (WHERE p.split = 'test'),
               avg(p.correct::INT) FILTER (WHERE i.split = 'test')
        FROM predictions p JOIN runs r USING (run_id)
        LEFT JOIN images i ON i.dataset_id = r.dataset_id AND i.image_id = p.image_id
        WHERE p.run_id = ? AND p.task = 'period'""", [run_id])
    return {"dataset_id": dataset_id, "accuracy": accuracy, "predictions": n, "joined": joined,
            "split_mismatch": split_mismatch, "test": test, "test_joined": test_joined, "test_acc": test_acc}


def annotate(path: str, dataset_id: str, image_id: str) -> None:
    """An expert's note, as the dashboard saves it (it keeps the image's content hash)."""
    with duckdb.connect(path) as con:
        con.execute("""INSERT INTO annotations (annotation_id, dataset_id, image_id, content_hash, run_id, verdict,
                                               note, author, created_at)
                       SELECT 'a1', dataset_id, image_id, content_hash, NULL, 'label wrong',
                       'note', 'tester', now() FROM images WHERE dataset_id = ? AND image_id = ?""",
                    [dataset_id, image_id])


@pytest.mark.slow
def test_a_changed_folder_is_a_new_version_and_stored_runs_keep_theirs(tmp_path: Path) -> None:
    root = folder(tmp_path / "paintings")
    exp = make_experiment(tmp_path, spec(root))
    run_experiment(exp, progress=False)
    before = run_state(exp.store, "versions/head")
    assert before["joined"] == before["predictions"] == 3 * PER_CLASS
    first = before["dataset_id"]
    victim = sorted(root.rglob("*.jpg"))[0].relative_to(root).as_posix()
    annotate(exp.store, first, victim)

    prepare_data(exp, progress=False)  # the folder unchanged: the same version, nothing rewritten
    assert sql(Path(exp.store), "SELECT dataset_id FROM datasets") == [(first,)]

    change(root)
    second = prepare_data(exp, progress=False).dataset_id
    after = run_state(exp.store, "versions/head")
    assert second != first
    assert after == before  # every prediction still joins its image row, with its split; metrics as they were
    assert after["test_acc"] == pytest.approx(after["accuracy"])
    counts = dict(sql(Path(exp.store), "SELECT dataset_id, count(*) FROM images GROUP BY ALL"))
    assert counts == {first: 3 * PER_CLASS, second: 3 * PER_CLASS - 15 + 10}
    # the annotated painting was deleted from the folder, yet the note still shows its image
    assert sql(Path(exp.store), """SELECT count(*) FROM annotations a
                                   JOIN images i USING (dataset_id, image_id)""") == [(1,)]

    run_experiment(exp, progress=False)  # resume: the run was made on the old version, so it is redone
    redone = run_state(exp.store, "versions/head")
    assert redone["dataset_id"] == second and redone["joined"] == redone["predictions"] == 3 * PER_CLASS - 5
    assert redone["split_mismatch"] == 0

    change(root, deleted=3, added=0)  # a third version: the second, used by no run or note any more, goes
    prepare_data(exp, progress=False)
    run_experiment(exp, progress=False)
    third = run_state(exp.store, "versions/head")["dataset_id"]
    prepare_data(exp, progress=False)
    kept = {d for (d,) in sql(Path(exp.store), "SELECT dataset_id FROM datasets")}
    assert kept == {first, third}  # the first keeps the annotated image's row
    assert {d for (d,) in sql(Path(exp.store), "SELECT DISTINCT dataset_id FROM images")} == kept


@pytest.mark.slow
def test_a_store_from_before_versions_keeps_its_runs(tmp_path: Path) -> None:
    """A dataset stored under its old id (the config's key alone) with the same content is adopted, not copied:
    its runs stay complete and are not trained again."""
    root = folder(tmp_path / "paintings", per_class=10)
    exp = make_experiment(tmp_path, spec(root))
    run_experiment(exp, progress=False)
    data = prepare_data(exp, progress=False)
    legacy = data.config.key()
    old = PreparedData(**{**data.__dict__, "dataset_id": legacy})
    with duckdb.connect(exp.store) as con:
        for table in ("datasets", "images", "skipped_images", "runs"):
            con.execute(f"UPDATE {table} SET dataset_id = ?", [legacy])
        con.execute("UPDATE runs SET config_hash = ?", [config_hash(exp.runs[0], old)])

    assert prepare_data(exp, progress=False).dataset_id == legacy
    assert run_experiment(exp, progress=False) == []  # skipped: already complete
    assert sql(Path(exp.store), "SELECT dataset_id FROM datasets") == [(legacy,)]


def test_the_version_is_the_content_not_the_row_order() -> None:
    import pandas as pd

    rows = pd.DataFrame({"image_id": ["a", "b"], "content_hash": ["1", "2"], "period": ["X", "Y"],
                         "artist": [None, "P"], "split": ["train", "test"]})
    assert content_digest(rows) == content_digest(rows.iloc[::-1])
    assert content_digest(rows) != content_digest(rows.assign(split=["train", "val"]))
    assert content_digest(rows) != content_digest(rows.assign(period=["X", "X"]))


def test_a_single_period_is_refused_before_training(tmp_path: Path, capsys) -> None:
    root = folder(tmp_path / "one", periods=("Baroque",), per_class=12)
    exp = make_experiment(tmp_path, spec(root))
    with pytest.raises(ConfigError, match=r"fewer than 2 periods") as err:
        run_experiment(exp, progress=False)
    message = str(err.value)
    assert str(root) in message and "Baroque" in message and "\n" not in message
    assert store.list_runs(exp.store).empty
    assert not (Path(exp.artifacts_dir) / "runs").exists()

    code = main(["run", str(tmp_path / "experiment.yaml"), "--store", exp.store, "--quiet"])
    err_lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err_lines) == 1 and "fewer than 2 periods" in err_lines[0]


def test_an_empty_test_split_is_refused_before_training(tmp_path: Path) -> None:
    root = folder(tmp_path / "paintings", per_class=8)
    raw = spec(root)
    raw["data"]["split"] = {"mode": "counts", "val": 2, "test": 0}
    exp = make_experiment(tmp_path, raw)
    with pytest.raises(ConfigError, match=r"no test images"):
        run_experiment(exp, progress=False)
    assert store.list_runs(exp.store).empty


def test_a_period_without_training_images_is_refused() -> None:
    import pandas as pd

    images = pd.DataFrame({"period": ["A", "A", "A", "B", "B"], "split": ["train", "val", "test", "val", "test"]})
    data = PreparedData(dataset_id="d", name="d", config=None, images=images, skipped=pd.DataFrame(),
                        duplicates=pd.DataFrame(), periods=["A", "B"], artists=[], pixels=np.zeros(0), synthetic=False)
    with pytest.raises(ConfigError, match=r"no training images.*'B'"):
        check_trainable(data, "where")
