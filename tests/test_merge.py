"""`python -m pipeline merge`: runs trained on many machines (one store each) brought into one store.

The cluster pattern end to end (slow): three processes each run one run of an experiment into their own store at
the same time, one merge brings them together, and the result is what one sequential run of the experiment into a
single store gives. The fast tests use small stores written with SQL: bad sources, a dataset id whose images differ,
a run whose copy fails half-way, annotations and saved slices."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml

from pipeline import annotations, slices, store
from pipeline.__main__ import main
from pipeline.merge import MergeError, merge
from pipeline.parquet_export import export_parquet
from tests.conftest import REPO_ROOT
from tests.test_parquet_export import small_store, tables


def quiet(line: str) -> None:
    pass


def run_rows(path: Path, run_id: str) -> dict[str, list[tuple]]:
    """Every per-run table's rows of one run, sorted."""
    with duckdb.connect(str(path), read_only=True) as con:
        return {t: sorted(con.execute(f"SELECT * FROM {t} WHERE run_id = ?", [run_id]).fetchall(), key=repr)
                for t in store.RUN_TABLES}


# ---------------------------------------------------------------- sources that cannot be merged


def older(path: Path) -> Path:
    with duckdb.connect(str(path)) as con:
        con.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    return path


def truncated(path: Path) -> Path:
    with duckdb.connect(str(path)) as con:
        con.execute("CHECKPOINT")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    return path


BAD_SOURCES = {
    "missing": (lambda tmp: tmp / "nowhere.duckdb", "no such store"),
    "text file": (lambda tmp: (tmp / "notes.duckdb", (tmp / "notes.duckdb").write_text("hello\n" * 50))[0],
                  "not a Period Eye store"),
    "older schema": (lambda tmp: older(small_store(tmp / "old.duckdb", ["demo/old"])), "python -m pipeline upgrade"),
    "damaged": (lambda tmp: truncated(small_store(tmp / "cut.duckdb", ["demo/cut"])), "truncated"),
}


@pytest.mark.parametrize("kind", sorted(BAD_SOURCES))
def test_a_bad_source_fails_with_one_line_before_any_work(tmp_path, capsys, kind):
    make, words = BAD_SOURCES[kind]
    good = small_store(tmp_path / "good.duckdb", ["demo/good"])
    bad = make(tmp_path)
    target = small_store(tmp_path / "target.duckdb", ["demo/mine"])
    before = target.read_bytes()
    source_before = bad.read_bytes() if bad.exists() else None
    assert main(["merge", str(good), str(bad), "--store", str(target)]) == 2  # the good one first: still nothing
    out = capsys.readouterr()
    err = out.err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and words in err, err
    assert "demo/good" not in out.out
    assert target.read_bytes() == before
    assert (bad.read_bytes() if bad.exists() else None) == source_before  # a source is never written


def test_the_store_itself_is_not_a_source(tmp_path):
    target = small_store(tmp_path / "target.duckdb", ["demo/mine"])
    with pytest.raises(MergeError, match="the store being merged into"):
        merge(target, [target], say=quiet)


@pytest.mark.parametrize("against", ["the store", "another source"])
def test_the_same_dataset_id_with_other_images_is_one_error_naming_both_files(tmp_path, against):
    """Checked before any work: the good source given first is not merged either."""
    edited = small_store(tmp_path / "edited.duckdb", ["demo/theirs"], salt="-edited")
    target = small_store(tmp_path / "target.duckdb", ["demo/mine"])
    if against == "another source":
        target = tmp_path / "new.duckdb"
    good = small_store(tmp_path / "good.duckdb", ["demo/good"])
    before = target.read_bytes() if target.exists() else None
    with pytest.raises(MergeError) as failure:
        merge(target, [good, edited], say=quiet)
    message = str(failure.value)
    first = target if against == "the store" else good
    assert f"differs between {first} and {edited}" in message and "\n" not in message
    assert (target.read_bytes() if target.exists() else None) == before


def test_a_run_whose_copy_fails_half_way_is_not_merged(tmp_path):
    """An export whose embeddings file of one run is cut: that run's rows (runs, predictions: read before the
    embeddings) are rolled back with it; the run merged before it stays, whole."""
    source = small_store(tmp_path / "a.duckdb", ["demo/a-first", "demo/b-broken"])
    export_parquet(source, tmp_path / "export")
    (broken,) = (tmp_path / "export" / "embeddings" / "run_id=demo%2Fb-broken").glob("*.parquet")
    broken.write_bytes(broken.read_bytes()[:40])
    target = tmp_path / "target.duckdb"
    lines: list[str] = []
    with pytest.raises(MergeError, match="demo/b-broken .*not merged.*as it was before it"):
        merge(target, [tmp_path / "export"], say=lines.append)
    assert lines == ["demo/a-first: added, 4 predictions, with its dataset demo-aaaa-11111111 (from "
                     f"{tmp_path / 'export'})"]
    assert run_rows(target, "demo/a-first") == run_rows(source, "demo/a-first")
    assert all(rows == [] for rows in run_rows(target, "demo/b-broken").values())


def test_merging_again_skips_and_force_replaces(tmp_path, capsys):
    source = small_store(tmp_path / "a.duckdb", ["demo/head"])
    target = small_store(tmp_path / "target.duckdb", ["demo/mine"])
    assert main(["merge", str(source), "--store", str(target)]) == 0
    assert "1 runs added" in capsys.readouterr().out
    merged = tables(target)
    assert main(["merge", str(source), "--store", str(target)]) == 0
    out = capsys.readouterr().out
    assert "demo/head: skipped, already in the store (--force replaces it)" in out
    assert "0 runs added, 0 replaced, 1 skipped" in out
    assert tables(target) == merged
    with duckdb.connect(str(target)) as con:  # the store's copy changed since (say, re-evaluated there)
        con.execute("UPDATE predictions SET confidence = 0.01 WHERE run_id = 'demo/head'")
    assert main(["merge", str(source), "--store", str(target), "--force"]) == 0
    assert "demo/head: replaced, 4 predictions" in capsys.readouterr().out
    assert tables(target) == merged


# ---------------------------------------------------------------- people's work: annotations and slices


def annotate(path: Path, author: str, verdict: str) -> str:
    with store.connect(path) as con:
        return annotations.save(con, "demo-aaaa-11111111", "img1.jpg", "demo/head", verdict, "a note", author)


def test_annotations_from_every_store_are_kept_once(tmp_path):
    target = small_store(tmp_path / "target.duckdb", ["demo/head"])
    first = annotate(target, "Ada", "label wrong")
    copy = tmp_path / "copy.duckdb"
    shutil.copy(target, copy)  # a copy of the store went to a colleague, who revised Ada's and added their own
    with store.connect(copy) as con:
        revised = annotations.revise(con, first, "ambiguous", "on second look", "Ada")
    annotate(copy, "Bea", "model right")
    with duckdb.connect(str(copy)) as con:  # and a row that is Ada's first one under another id (imported twice)
        con.execute("INSERT INTO annotations SELECT * REPLACE ('other-id' AS annotation_id) FROM annotations "
                    "WHERE annotation_id = ?", [first])
    report = merge(target, [copy], say=quiet)
    assert report.annotations == 2  # the revision and Bea's; Ada's first is here already, under either id
    with duckdb.connect(str(target), read_only=True) as con:
        rows = con.execute("SELECT author, verdict, revises FROM annotations ORDER BY created_at").fetchall()
        current = con.execute(f"SELECT author, verdict FROM {annotations.CURRENT} c ORDER BY author").fetchall()
    assert rows == [("Ada", "label wrong", None), ("Ada", "ambiguous", first), ("Bea", "model right", None)]
    assert current == [("Ada", "ambiguous"), ("Bea", "model right")]
    assert revised in {a for (a,) in duckdb.connect(str(target), read_only=True).execute(
        "SELECT annotation_id FROM annotations").fetchall()}
    assert merge(target, [copy], say=quiet).annotations == 0  # merging again adds nothing


def test_saved_slices_come_by_id_and_an_existing_one_is_kept(tmp_path):
    target = small_store(tmp_path / "target.duckdb", ["demo/head"])
    source = small_store(tmp_path / "a.duckdb", ["demo/other"])
    with store.connect(target) as con:
        slices.save(con, "Dark paintings", {"period": ["a"]}, "Ada")
    with store.connect(source) as con:
        slices.save(con, "Dark paintings", {"period": ["b"]}, "Bea")  # the same id, another filter
        slices.save(con, "Portraits", {"period": ["a", "b"]}, "Bea")
    report = merge(target, [source], say=quiet)
    assert report.slices == 1
    with duckdb.connect(str(target), read_only=True) as con:
        rows = con.execute("SELECT slice_id, author FROM slices ORDER BY slice_id").fetchall()
    assert rows == [("dark-paintings", "Ada"), ("portraits", "Bea")]


# ---------------------------------------------------------------- the cluster pattern, end to end

CLUSTER = {
    "name": "merge-cluster",
    "data": {"source": "demo", "resize": 40, "crop": 32, "thumbnail_size": 48,
             "split": {"mode": "fractions", "val": 0.2, "test": 0.2, "seed": 0}},
    "defaults": {"backbone": "efficientnet_lite0", "epochs": 2, "lr": 0.01, "batch_size": 64, "projection": "pca"},
    "attributions": {"ig_steps": 2, "max_images": 2, "sanity_images": 2, "heatmap_size": 16},
    "runs": [{"name": "head", "strategy": "head"}, {"name": "head-slow", "strategy": "head", "lr": 0.003},
             {"name": "head-seed", "strategy": "head", "seed": 7}],
}


def pipeline(*args: str) -> subprocess.Popen:
    """`python -m pipeline ARGS` in a process of its own, its output read as it comes."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=REPO_ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen) -> str:
    out, _ = process.communicate(timeout=900)
    assert process.returncode == 0, out
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> dict[str, Path]:
    """Three jobs at once, each one run into its own store (as three machines would); then the same experiment
    run sequentially into one store."""
    folder = tmp_path_factory.mktemp("cluster")
    experiment = folder / "experiment.yaml"
    experiment.write_text(yaml.safe_dump(CLUSTER))
    names = [r["name"] for r in CLUSTER["runs"]]
    jobs = [pipeline("run", str(experiment), "--only", name, "--store", str(folder / f"job-{name}.duckdb"), "--quiet")
            for name in names]
    for job in jobs:
        finish(job)
    finish(pipeline("run", str(experiment), "--store", str(folder / "sequential.duckdb"), "--quiet"))
    return {"folder": folder, "sequential": folder / "sequential.duckdb",
            **{name: folder / f"job-{name}.duckdb" for name in names}}


def results(path: Path) -> dict[str, object]:
    """What the runs found, per run: predictions, metrics, confusion, labels and the runs' headline numbers."""
    with duckdb.connect(str(path), read_only=True) as con:
        def rows(sql: str) -> list[tuple]:
            return con.execute(sql).fetchall()
        return {
            "runs": rows("SELECT run_id, dataset_id, config_hash, status, test_accuracy, test_macro_f1 FROM runs "
                         "ORDER BY run_id"),
            "predictions": rows("SELECT run_id, image_id, task, split, pred_label, correct, confidence "
                                "FROM predictions ORDER BY run_id, image_id, task"),
            "metrics": rows("SELECT run_id, split, task, metric, label, value FROM metrics "
                            "ORDER BY run_id, split, task, metric, label"),
            "confusion": rows("SELECT * FROM confusion ORDER BY ALL"),
            "labels": rows("SELECT * FROM run_labels ORDER BY ALL"),
            "images": rows("SELECT dataset_id, image_id, content_hash, split FROM images ORDER BY ALL"),
            "skipped": rows("SELECT dataset_id, path, reason FROM skipped_images ORDER BY ALL"),
        }


def same(a: list[tuple], b: list[tuple], tolerance: float = 1e-6) -> bool:
    """Row by row equal, floats within `tolerance`."""
    def close(x: object, y: object) -> bool:
        if isinstance(x, float) and isinstance(y, float):
            return abs(x - y) <= tolerance
        return x == y
    return len(a) == len(b) and all(len(r) == len(s) and all(map(close, r, s)) for r, s in zip(a, b, strict=True))


@pytest.mark.slow
def test_three_jobs_then_one_merge_equal_one_sequential_run(cluster, capsys):
    merged = cluster["folder"] / "merged.duckdb"
    jobs = [str(cluster[r["name"]]) for r in CLUSTER["runs"]]
    assert main(["merge", *jobs, "--store", str(merged)]) == 0
    out = capsys.readouterr().out
    assert len([line for line in out.splitlines() if ": added, " in line]) == 3, out  # one line per run
    assert "3 runs added, 0 replaced, 0 skipped" in out
    want, got = results(cluster["sequential"]), results(merged)
    assert [r[0] for r in got["runs"]] == ["merge-cluster/head", "merge-cluster/head-seed", "merge-cluster/head-slow"]
    assert len(got["predictions"]) == 3 * 600 and got["metrics"] and got["confusion"]
    for table in want:
        assert same(got[table], want[table]), table
    assert main(["merge", *jobs, "--store", str(merged)]) == 0  # again: nothing added, each run reported
    assert "0 runs added, 0 replaced, 3 skipped" in capsys.readouterr().out
    assert results(merged) == got


@pytest.mark.slow
def test_a_parquet_export_merges_to_the_same_store(cluster, capsys):
    export = cluster["folder"] / "export"
    assert main(["export", "--parquet", str(export), "--store", str(cluster["sequential"])]) == 0
    target = cluster["folder"] / "from-parquet.duckdb"
    assert main(["merge", str(export), "--store", str(target)]) == 0
    assert "3 runs added" in capsys.readouterr().out
    assert tables(target) == tables(cluster["sequential"])  # every table, every row, every column


@pytest.mark.slow
def test_force_replaces_a_run_with_the_sources_copy(cluster, capsys):
    target = cluster["folder"] / "forced.duckdb"
    shutil.copy(cluster["sequential"], target)
    with duckdb.connect(str(target)) as con:
        con.execute("DELETE FROM predictions WHERE run_id = 'merge-cluster/head' AND split = 'test'")
    job = cluster["head"]
    assert main(["merge", str(job), "--store", str(target)]) == 0
    assert "merge-cluster/head: skipped" in capsys.readouterr().out
    assert run_rows(target, "merge-cluster/head") != run_rows(job, "merge-cluster/head")
    assert main(["merge", str(job), "--store", str(target), "--force"]) == 0
    assert "merge-cluster/head: replaced" in capsys.readouterr().out
    assert run_rows(target, "merge-cluster/head") == run_rows(job, "merge-cluster/head")


@pytest.mark.slow
def test_a_merge_killed_after_its_first_run_leaves_whole_runs_only(cluster):
    """SIGKILL once the first run is reported: whatever the store holds then is whole runs, nothing of a partial one
    (DuckDB drops an uncommitted transaction when it opens the file again)."""
    target = cluster["folder"] / "killed.duckdb"
    merging = pipeline("merge", str(cluster["sequential"]), "--store", str(target))
    assert merging.stdout is not None
    first = merging.stdout.readline()
    merging.kill()
    merging.wait()
    assert ": added, " in first, first
    held = {r for (r,) in duckdb.connect(str(target), read_only=True).execute("SELECT run_id FROM runs").fetchall()}
    assert first.split(":")[0] in held
    for run_id in ["merge-cluster/head", "merge-cluster/head-seed", "merge-cluster/head-slow"]:
        rows = run_rows(target, run_id)
        if run_id in held:
            assert rows == run_rows(cluster["sequential"], run_id), run_id
        else:
            assert all(r == [] for r in rows.values()), run_id
