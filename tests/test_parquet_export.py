"""`python -m pipeline export --parquet DIR`: every table as Parquet, per-run tables partitioned by run, written
whole or not at all; and `merge` reading such a folder back (the trained-store round trip is in test_merge.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from pipeline import store
from pipeline.__main__ import main
from pipeline.merge import merge
from pipeline.parquet_export import MANIFEST, export_parquet


def small_store(path: Path, run_ids: list[str], dataset_id: str = "demo-aaaa-11111111", salt: str = "") -> Path:
    """A real store with a dataset of four images and, per run, its runs row, predictions, metrics and confusion
    (written with SQL: these tests are about copying rows, not about training)."""
    with store.connect(path) as con:
        con.execute("INSERT INTO datasets (dataset_id, name, periods, n_images) VALUES (?, 'demo', ['a', 'b'], 4)",
                    [dataset_id])
        for i in range(4):
            con.execute("INSERT INTO images (dataset_id, image_id, period, split, content_hash, thumbnail) "
                        "VALUES (?, ?, ?, 'test', ?, ?)",
                        [dataset_id, f"img{i}.jpg", "ab"[i % 2], f"hash{i}{salt}", b"\xff\xd8" + bytes([i])])
        con.execute("INSERT INTO skipped_images VALUES (?, 'bad.jpg', 3, 'decode: empty file', 'decode')",
                    [dataset_id])
        for n, run_id in enumerate(run_ids):
            con.execute("INSERT INTO runs (run_id, experiment, name, dataset_id, status, test_accuracy, config) "
                        "VALUES (?, 'demo', ?, ?, 'complete', 0.5, '{\"lr\": 0.01}')",
                        [run_id, run_id.split("/")[-1], dataset_id])
            for i in range(4):
                con.execute("INSERT INTO predictions (run_id, image_id, split, task, true_label, pred_label, correct, "
                            "confidence, probs) VALUES (?, ?, 'test', 'period', ?, 'a', ?, ?, ?)",
                            [run_id, f"img{i}.jpg", "ab"[i % 2], i % 2 == 0, 0.5 + n / 10,
                             [0.5 + n / 10, 0.5 - n / 10]])
                con.execute("INSERT INTO embeddings VALUES (?, ?, ?, ?, ?)", [run_id, f"img{i}.jpg", [0.1, i], i, n])
            con.execute("INSERT INTO metrics VALUES (?, 'test', 'period', 'accuracy', NULL, 0.5, 0.2, 0.8)", [run_id])
            con.execute("INSERT INTO confusion VALUES (?, 'test', 'period', 'a', 'a', 2), (?, 'test', 'period', 'b', "
                        "'a', 2)", [run_id, run_id])
    return path


def tables(path: Path) -> dict[str, list[tuple]]:
    """Every table's rows, sorted: what two stores must share to hold the same results."""
    with duckdb.connect(str(path), read_only=True) as con:
        names = [n for (n,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'"
                                           ).fetchall()]
        return {n: sorted(con.execute(f'SELECT * FROM "{n}"').fetchall(), key=repr) for n in names}


def test_export_writes_every_table_partitioned_by_run(tmp_path):
    source = small_store(tmp_path / "a.duckdb", ["demo/head", "demo/fine tune"])
    out = tmp_path / "export"
    assert main(["export", "--parquet", str(out), "--store", str(source)]) == 0
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["schema_version"] == store.SCHEMA_VERSION
    assert set(manifest["tables"]) == set(tables(source))
    runs = sorted(p.name for p in (out / "predictions").iterdir())
    assert runs == ["run_id=demo%2Ffine%20tune", "run_id=demo%2Fhead"]  # one folder per run, the id escaped
    con = duckdb.connect()
    read = con.execute("SELECT run_id, count(*) FROM read_parquet(?, hive_partitioning = true) GROUP BY 1 ORDER BY 1",
                       [str(out / "predictions" / "**" / "*.parquet")]).fetchall()
    assert read == [("demo/fine tune", 4), ("demo/head", 4)]
    assert con.execute("SELECT count(*) FROM read_parquet(?)", [str(out / "calibration" / "data.parquet")]
                       ).fetchone() == (0,)  # an empty table is one file that keeps its columns
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export.tmp")]  # the temporary folder is gone


def test_an_export_merges_into_an_empty_store_as_the_store_itself(tmp_path):
    source = small_store(tmp_path / "a.duckdb", ["demo/head", "demo/other"])
    export_parquet(source, tmp_path / "export")
    target = tmp_path / "merged.duckdb"
    report = merge(target, [tmp_path / "export"], say=lambda line: None)
    assert sorted(report.added) == ["demo/head", "demo/other"]
    want, got = tables(source), tables(target)
    assert got == want


def test_export_refuses_a_folder_with_files_and_leaves_it(tmp_path, capsys):
    source = small_store(tmp_path / "a.duckdb", ["demo/head"])
    out = tmp_path / "export"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["export", "--parquet", str(out), "--store", str(source)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not an empty folder" in err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_a_failed_export_leaves_nothing_under_the_folder(tmp_path):
    """A store that cannot be read part-way (a table's blocks cut off) fails the export: no DIR, no hidden folder."""
    source = small_store(tmp_path / "a.duckdb", ["demo/head"])
    with duckdb.connect(str(source)) as con:  # a checkpointed file, so the cut really removes table blocks
        con.execute("CHECKPOINT")
    data = source.read_bytes()
    broken = tmp_path / "broken.duckdb"
    broken.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises((store.StoreError, duckdb.Error)):
        export_parquet(broken, tmp_path / "export")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.duckdb", "broken.duckdb"]


def test_leftovers_of_a_killed_export_are_removed(tmp_path):
    source = small_store(tmp_path / "a.duckdb", ["demo/head"])
    dead = tmp_path / ".export.tmp-999999999"  # no such process
    (dead / "predictions").mkdir(parents=True)
    export_parquet(source, tmp_path / "export")
    assert not dead.exists()
    assert (tmp_path / "export" / MANIFEST).exists()


@pytest.mark.parametrize("damage", ["no manifest", "older schema", "missing table"])
def test_merge_refuses_a_folder_that_is_not_a_current_export(tmp_path, capsys, damage):
    source = small_store(tmp_path / "a.duckdb", ["demo/head"])
    out = tmp_path / "export"
    export_parquet(source, out)
    manifest = json.loads((out / MANIFEST).read_text())
    if damage == "no manifest":
        (out / MANIFEST).unlink()
    elif damage == "older schema":
        (out / MANIFEST).write_text(json.dumps({**manifest, "schema_version": "5"}))
    else:
        shutil.rmtree(out / "predictions")
    target = small_store(tmp_path / "target.duckdb", ["demo/mine"])
    before = target.read_bytes()
    assert main(["merge", str(out), "--store", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(out) in err, err
    assert {"no manifest": "not a Period Eye Parquet export", "older schema": "upgrade",
            "missing table": "incomplete"}[damage] in err
    assert target.read_bytes() == before
